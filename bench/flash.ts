/**
 * Flashing: wall time of `flotilla os flash` (verify included) on a 2 GiB balenaOS-like image with about 12% of it
 * mapped, written to a loop device, beside `dd` and `bmaptool copy` of the same image in the same run, raw, .gz and .bz2.
 * The loop device does direct I/O on its file, as a card does: writes reach the disk rather than the host's page cache.
 * Needs root (losetup), bmaptool, and a built CLI (`npm run build`).
 */
import {execFileSync} from 'node:child_process'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {loadavg, tmpdir} from 'node:os'
import path from 'node:path'

import {CLI_BIN} from '../test/helpers/cli.js'
import {LoopDevices, makeDiskFixture, sparseFile} from '../test/e2e/os-fixtures.js'
import {medianTimes, timeCommand} from './measure.js'

const IMAGE_MIB = 2048
/** Random data per root and data partition: with the file systems' own metadata, about 12% of the image is mapped. */
const DATA_MIB = 62
const ROUNDS = 2
const MB = 1_000_000

export async function run(): Promise<void> {
  const started = Date.now()
  const loadAtStart = loadavg()[0]
  const fixture = makeDiskFixture(IMAGE_MIB, 'gz bz2', DATA_MIB)
  const scratch = mkdtempSync(path.join(tmpdir(), 'flotilla-bench-flash-'))
  const loops = new LoopDevices()
  try {
    const device = loops.attach(sparseFile(path.join(scratch, 'target.bin'), (IMAGE_MIB + 64) * 1024 * 1024), {directIo: true})
    const image = fixture.image
    const gz = `${image}.gz`
    const bz2 = `${image}.bz2`
    const env = {PATH: process.env.PATH, NO_COLOR: '1', HOME: scratch}
    const flotilla = (source: string) => () => timeCommand(process.execPath, [CLI_BIN, 'os', 'flash', source, '--drive', device, '--yes', '--allow-system-drive'], env)
    const shell = (script: string) => () => timeCommand('bash', ['-o', 'pipefail', '-c', script], env)
    const dd = `dd of=${device} bs=4M oflag=direct conv=fsync status=none`
    const times = medianTimes(
      {
        'flotilla raw': flotilla(image),
        'dd raw': shell(`dd if=${image} ${dd.replace('dd ', '')}`),
        'bmaptool copy raw': () => timeCommand('bmaptool', ['-q', 'copy', '--bmap', `${image}.bmap`, image, device], env),
        'flotilla gz': flotilla(gz),
        'zcat | dd gz': shell(`zcat ${gz} | ${dd} iflag=fullblock`),
        'bmaptool copy gz': () => timeCommand('bmaptool', ['-q', 'copy', '--bmap', `${image}.bmap`, gz, device], env),
        'flotilla bz2': flotilla(bz2),
        'bzip2 -dc | dd bz2': shell(`bzip2 -dc ${bz2} | ${dd} iflag=fullblock`),
      },
      ROUNDS,
    )
    const mapped = fixture.blockMap.mappedBytes
    const size = fixture.blockMap.imageSize
    const line = (name: string, note = '') =>
      process.stdout.write(`  ${name.padEnd(20)} ${(times[name] / 1000).toFixed(2).padStart(7)} s  ${note}\n`)
    const load = `${loadAtStart.toFixed(1)} at the start, ${loadavg()[0].toFixed(1)} at the end`
    process.stdout.write(`flash: ${(size / MB).toFixed(0)} MB image, ${(mapped / MB).toFixed(0)} MB (${((100 * mapped) / size).toFixed(1)}%) mapped, to a direct-I/O loop device; median of ${ROUNDS} runs after a warm-up; load average (1 min) ${load}\n`)
    const rawRatio = times['flotilla raw'] / times['bmaptool copy raw']
    line('flotilla raw', '(writes the mapped ranges and what the FAT boot partition uses, then reads them back and compares)')
    line('dd raw', `(every byte, no verify)  flotilla ${(times['dd raw'] / times['flotilla raw']).toFixed(1)}× faster`)
    line('bmaptool copy raw', `(mapped ranges, checks the source's checksums, no read-back)  flotilla/bmaptool = ${rawRatio.toFixed(2)} (target < 1: ${rawRatio < 1 ? 'ok' : 'MISSED'})`)
    const gzRatio = times['flotilla gz'] / times['zcat | dd gz']
    line('flotilla gz', '(decompresses everything, writes and verifies the mapped ranges)')
    line('zcat | dd gz', `(decompresses and writes every byte)  flotilla/zcat|dd = ${gzRatio.toFixed(2)} (target ≤ 1.2: ${gzRatio <= 1.2 ? 'ok' : 'MISSED'})`)
    line('bmaptool copy gz', `flotilla/bmaptool = ${(times['flotilla gz'] / times['bmaptool copy gz']).toFixed(2)}`)
    line('flotilla bz2', `(decompresses with ${process.env.PATH?.split(':').some((dir) => existsSync(path.join(dir, 'lbzip2'))) ? 'lbzip2' : 'bzip2'}, writes and verifies the mapped ranges)`)
    line('bzip2 -dc | dd bz2', `(decompresses and writes every byte)  flotilla/bzip2|dd = ${(times['flotilla bz2'] / times['bzip2 -dc | dd bz2']).toFixed(2)}`)
    process.stdout.write(`  (bench took ${((Date.now() - started) / 1000).toFixed(0)} s)\n`)
  } finally {
    loops.detachAll()
    fixture.cleanup()
    rmSync(scratch, {recursive: true, force: true})
    execFileSync('sync')
  }
}
