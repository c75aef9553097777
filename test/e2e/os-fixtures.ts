import {execFileSync} from 'node:child_process'
import {closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {parseBlockMap, type BlockMap} from '../../src/image/bmap.js'
import {PROJECT_ROOT} from '../helpers/cli.js'

/** A balenaOS-like disk image with its compressed forms and bmap, made by scripts/make-disk-fixture.sh. */
export interface DiskFixture {
  directory: string
  image: string
  blockMap: BlockMap
  /** Byte offset of partition 6 (resin-data), which holds a payload.bin of random bytes. */
  dataPartitionOffset: number
  cleanup(): void
}

export function makeDiskFixture(sizeMiB = 128, forms = 'gz xz zip bz2', dataMiB = 1): DiskFixture {
  const directory = mkdtempSync(path.join(tmpdir(), 'flotilla-disk-'))
  const image = path.join(directory, 'balena.img')
  execFileSync('bash', [path.join(PROJECT_ROOT, 'scripts', 'make-disk-fixture.sh'), image, String(sizeMiB), String(dataMiB)], {
    env: {...process.env, FIXTURE_FORMS: forms},
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  const table = JSON.parse(execFileSync('sfdisk', ['--json', image], {encoding: 'utf8'})) as {partitiontable: {partitions: Array<{node: string; start: number}>}}
  const data = table.partitiontable.partitions.find((partition) => partition.node.endsWith('6'))!
  return {
    directory,
    image,
    blockMap: parseBlockMap(readFileSync(`${image}.bmap`, 'utf8')),
    dataPartitionOffset: data.start * 512,
    cleanup: () => rmSync(directory, {recursive: true, force: true}),
  }
}

/** Attached loop devices, detached again by `detachAll` (call it in `after`). */
export class LoopDevices {
  private readonly attached: string[] = []

  /** `directIo`: the loop device reads and writes its file with O_DIRECT, bypassing the host's page cache as a real card does. */
  attach(file: string, options: {readOnly?: boolean; directIo?: boolean} = {}): string {
    const flags = [...(options.readOnly ? ['--read-only'] : []), ...(options.directIo ? ['--direct-io=on'] : [])]
    const device = execFileSync('losetup', ['--find', '--show', ...flags, file], {encoding: 'utf8'}).trim()
    this.attached.push(device)
    return device
  }

  detachAll(): void {
    for (const device of this.attached.splice(0)) {
      try {
        execFileSync('losetup', ['--detach', device], {stdio: 'ignore'})
      } catch {
        // already gone: nothing to undo
      }
    }
  }
}

/** Byte-compares the image and the destination over each range with cmp; returns the first differing range. */
export function compareRanges(image: string, destination: string, ranges: Array<{start: number; end: number}>): string | undefined {
  for (const range of ranges) {
    try {
      execFileSync('cmp', [`--ignore-initial=${range.start}:${range.start}`, `--bytes=${range.end - range.start}`, image, destination], {stdio: 'pipe'})
    } catch (error) {
      return `${range.start}-${range.end}: ${String((error as {stdout?: Buffer}).stdout ?? error)}`
    }
  }

  return undefined
}

/** sha256 of a file, or of its first `bytes` bytes (a drive is larger than what was written to it). */
export function sha256Of(file: string, bytes?: number): string {
  const script = bytes === undefined ? 'sha256sum < "$1"' : `head -c ${bytes} "$1" | sha256sum`
  return execFileSync('bash', ['-c', script, 'sha256', file], {encoding: 'utf8'}).split(' ')[0]
}

/** A sparse file of the given size, created or resized. */
export function sparseFile(file: string, bytes: number): string {
  const fd = openSync(file, 'a')
  ftruncateSync(fd, bytes)
  closeSync(fd)
  return file
}
