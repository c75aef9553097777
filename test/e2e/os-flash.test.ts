import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {formatBytes} from '../../src/image/format.js'
import {makeCliHome, runCli} from '../helpers/cli.js'
import {TerminalSession} from '../helpers/terminal.js'
import {compareRanges, LoopDevices, makeDiskFixture, sha256Of, sparseFile, type DiskFixture} from './os-fixtures.js'

const MiB = 1024 * 1024

describe('os flash (real loop devices; needs root)', function () {
  this.timeout(180_000)
  let fixture: DiskFixture
  let scratch: string
  const loops = new LoopDevices()
  let target: string
  const mounts: string[] = []

  before(function () {
    fixture = makeDiskFixture()
    scratch = mkdtempSync(path.join(tmpdir(), 'flotilla-flash-'))
    const backing = path.join(scratch, 'target.bin')
    sparseFile(backing, 160 * MiB)
    target = loops.attach(backing)
  })

  after(function () {
    for (const mountpoint of mounts.reverse()) {
      try {
        execFileSync('umount', [mountpoint], {stdio: 'ignore'})
      } catch {
        // the test under way unmounted it already
      }
    }

    loops.detachAll()
    fixture?.cleanup()
    if (scratch) rmSync(scratch, {recursive: true, force: true})
  })

  function scribble(device: string): void {
    execFileSync('dd', ['if=/dev/urandom', `of=${device}`, 'bs=1M', 'count=160', 'oflag=direct', 'status=none'])
  }

  for (const form of ['', '.gz', '.xz', '.zip', '.bz2']) {
    it(`writes the ${form || 'raw'} form to a loop device over the mapped ranges, and verifies`, async function () {
      scribble(target)
      const result = await runCli(['os', 'flash', fixture.image + form, '--drive', target, '--yes', '--allow-system-drive'], {timeoutMs: 150_000})
      assert.equal(result.exitCode, 0, result.stderr)
      assert.match(result.stderr, /written and verified/)
      assert.match(result.stderr, /using .*balena\.img\.bmap/)
      assert.equal(compareRanges(fixture.image, target, fixture.blockMap.ranges), undefined)
    })
  }

  it('gives the same figures for a raw image and its .gz with the same bmap: the image size and the data the bmap maps', async function () {
    const said: string[] = []
    const summaries: Array<{image_size: number; data_bytes: number; bytes_written: number}> = []
    for (const form of ['', '.gz']) {
      const text = await runCli(['os', 'flash', fixture.image + form, '--drive', target, '--yes', '--allow-system-drive'])
      assert.equal(text.exitCode, 0, text.stderr)
      said.push(text.stderr.replace(`flashed ${fixture.image + form} `, 'flashed IMAGE ').replace(/in [\d.]+ s/, 'in N s'))
      const json = await runCli(['os', 'flash', fixture.image + form, '--drive', target, '--yes', '--allow-system-drive', '--json'])
      assert.equal(json.exitCode, 0, json.stderr)
      summaries.push(JSON.parse(json.stdout.trim().split('\n').at(-1)!) as (typeof summaries)[number])
    }

    assert.equal(said[0], said[1])
    const {imageSize, mappedBytes} = fixture.blockMap
    assert.match(said[0], new RegExp(`: ${formatBytes(mappedBytes)} of ${formatBytes(imageSize)} hold data and will be written\n`))
    assert.match(said[0], new RegExp(`: ${formatBytes(imageSize)} image holding ${formatBytes(mappedBytes)} of data, written and verified in N s`))
    for (const summary of summaries) assert.deepEqual({...summary, image_size: imageSize, data_bytes: mappedBytes}, summary)
    // The raw image's boot partition is written where its FAT says it is used, not whole: little more than the bmap maps.
    assert.ok(summaries[0].bytes_written - mappedBytes < 2 * MiB, `the raw image wrote ${summaries[0].bytes_written} bytes for ${mappedBytes} mapped`)
  })

  it('writes every byte when there is no bmap beside the image, and flashes into a regular file', async function () {
    const lone = path.join(scratch, 'lone')
    mkdirSync(lone, {recursive: true})
    copyFileSync(`${fixture.image}.gz`, path.join(lone, 'os.img.gz'))
    scribble(target)
    const toDrive = await runCli(['os', 'flash', path.join(lone, 'os.img.gz'), '--drive', target, '--yes', '--allow-system-drive'])
    assert.equal(toDrive.exitCode, 0, toDrive.stderr)
    assert.doesNotMatch(toDrive.stderr, /bmap/)
    const size = fixture.blockMap.imageSize
    assert.equal(sha256Of(target, size), sha256Of(fixture.image))

    const file = path.join(scratch, 'copy.img')
    const toFile = await runCli(['os', 'flash', path.join(lone, 'os.img.gz'), '--drive', file, '--yes'])
    assert.equal(toFile.exitCode, 0, toFile.stderr)
    execFileSync('cmp', [fixture.image, file])
  })

  it('writes only the blocks the file systems use when a raw image has no bmap, and the card checks clean', async function () {
    const lone = path.join(scratch, 'lone-raw')
    mkdirSync(lone, {recursive: true})
    const image = path.join(lone, 'os.img')
    copyFileSync(fixture.image, image)
    scribble(target)
    const result = await runCli(['os', 'flash', image, '--drive', target, '--yes', '--allow-system-drive', '--json'])
    assert.equal(result.exitCode, 0, result.stderr)
    const summary = JSON.parse(result.stdout.trim().split('\n').at(-1)!) as {bytes_written: number; sparse: boolean}
    assert.equal(summary.sparse, true)
    assert.ok(summary.bytes_written < fixture.blockMap.imageSize / 2, `wrote ${summary.bytes_written} bytes`)
    execFileSync('partx', ['--update', target])
    try {
      execFileSync('fsck.vfat', ['-n', `${target}p1`], {stdio: 'pipe'})
      for (const partition of [2, 3, 5, 6]) execFileSync('e2fsck', ['-f', '-n', `${target}p${partition}`], {stdio: 'pipe'})
      const payload = (source: string) => execFileSync('debugfs', ['-R', 'cat payload.bin', source], {stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 * MiB})
      assert.ok(payload(`${target}p6`).equals(payload(`${image}?offset=${fixture.dataPartitionOffset}`)))
    } finally {
      execFileSync('partx', ['--delete', target])
    }
  })

  it('writes what os configure put into the boot partition even where the bmap says the blocks are free', async function () {
    const configured = path.join(scratch, 'configured')
    mkdirSync(configured, {recursive: true})
    const image = path.join(configured, 'balena.img')
    copyFileSync(fixture.image, image)
    copyFileSync(`${fixture.image}.bmap`, `${image}.bmap`)
    const config = {apiEndpoint: 'http://127.0.0.1:7171', apiKey: 'k'.repeat(32), applicationId: 5, deviceType: 'raspberrypi4-64', filler: 'x'.repeat(300_000)}
    writeFileSync(path.join(configured, 'config.json'), JSON.stringify(config))
    assert.equal((await runCli(['os', 'configure', image, '--config', path.join(configured, 'config.json')])).exitCode, 0)
    scribble(target)
    const flashed = await runCli(['os', 'flash', image, '--drive', target, '--yes', '--allow-system-drive'])
    assert.equal(flashed.exitCode, 0, flashed.stderr)
    const read = await runCli(['config', 'read', '--drive', target])
    assert.equal(read.exitCode, 0, read.stderr)
    assert.deepEqual(JSON.parse(read.stdout), config)
  })

  it('answers to the alias "local flash" and prints progress as JSON lines with --json', async function () {
    const file = path.join(scratch, 'json.img')
    const result = await runCli(['local', 'flash', `${fixture.image}.zip`, '--drive', file, '--yes', '--json'])
    assert.equal(result.exitCode, 0, result.stderr)
    const events = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as {type: string; phase?: string; verified?: boolean})
    assert.ok(events.some((event) => event.type === 'progress' && event.phase === 'write'))
    assert.ok(events.some((event) => event.type === 'progress' && event.phase === 'verify'))
    assert.deepEqual(events.at(-1), {...events.at(-1), type: 'result', verified: true})
    assert.equal(compareRanges(fixture.image, file, fixture.blockMap.ranges), undefined)
  })

  describe('refusals', function () {
    let sentinel: string

    beforeEach(function () {
      writeFileSync(path.join(scratch, 'sentinel'), 'unchanged')
      execFileSync('dd', [`if=${path.join(scratch, 'sentinel')}`, `of=${target}`, 'conv=fsync', 'status=none'])
      sentinel = sha256Of(target, 4 * MiB)
    })

    afterEach(function () {
      assert.equal(sha256Of(target, 4 * MiB), sentinel, 'a refused flash changed the drive')
    })

    it('refuses a non-removable drive without --allow-system-drive', async function () {
      const result = await runCli(['os', 'flash', fixture.image, '--drive', target, '--yes'])
      assert.equal(result.exitCode, 1)
      assert.match(result.stderr, /refusing to flash .*not a removable drive.*--allow-system-drive/)
    })

    it('needs --yes without a terminal, and --drive too', async function () {
      const noYes = await runCli(['os', 'flash', fixture.image, '--drive', target, '--allow-system-drive'])
      assert.equal(noYes.exitCode, 2)
      assert.match(noYes.stderr, /add --yes/)
      const noDrive = await runCli(['os', 'flash', fixture.image, '--yes'])
      assert.equal(noDrive.exitCode, 2)
      assert.match(noDrive.stderr, /missing --drive/)
    })

    it('refuses a drive smaller than the image, naming both sizes', async function () {
      const small = path.join(scratch, 'small.bin')
      sparseFile(small, 32 * MiB)
      const device = loops.attach(small)
      const result = await runCli(['os', 'flash', fixture.image, '--drive', device, '--yes', '--allow-system-drive'])
      assert.equal(result.exitCode, 1)
      assert.match(result.stderr, new RegExp(`too small: it holds 33.6 MB \\(${32 * MiB} bytes\\), the image needs 134 MB \\(${128 * MiB} bytes\\)`))
    })

    it('refuses a read-only drive', async function () {
      const backing = path.join(scratch, 'ro.bin')
      sparseFile(backing, 160 * MiB)
      const device = loops.attach(backing, {readOnly: true})
      const result = await runCli(['os', 'flash', fixture.image, '--drive', device, '--yes', '--allow-system-drive'])
      assert.equal(result.exitCode, 1)
      assert.match(result.stderr, /read-only/)
    })

    it('refuses the drive holding the image, and the drive holding /', async function () {
      const backing = path.join(scratch, 'holder.bin')
      sparseFile(backing, 300 * MiB)
      const device = loops.attach(backing)
      execFileSync('mkfs.ext4', ['-q', '-F', device])
      const mountpoint = path.join(scratch, 'holder')
      mkdirSync(mountpoint)
      execFileSync('mount', [device, mountpoint])
      mounts.push(mountpoint)
      copyFileSync(fixture.image, path.join(mountpoint, 'os.img'))
      const result = await runCli(['os', 'flash', path.join(mountpoint, 'os.img'), '--drive', device, '--yes', '--allow-system-drive'])
      assert.equal(result.exitCode, 1)
      assert.match(result.stderr, /holds the image being flashed/)

      const root = execFileSync('findmnt', ['--noheadings', '--output', 'SOURCE', '--target', '/'], {encoding: 'utf8'}).trim()
      if (root.startsWith('/dev/')) {
        const system = await runCli(['os', 'flash', fixture.image, '--drive', root.replace(/p?\d+$/, ''), '--yes', '--allow-system-drive'])
        assert.equal(system.exitCode, 1)
        assert.match(system.stderr, /holds \/: it is this computer's system drive|is a partition/)
      }
    })

    it('names a missing image before a drive that is not one, though it examines both at once', async function () {
      const missing = path.join(scratch, 'no-such.img')
      const both = await runCli(['os', 'flash', missing, '--drive', path.join(scratch, 'no-such-folder', 'x'), '--yes'])
      assert.equal(both.exitCode, 1)
      assert.match(both.stderr, /^error: image ".*no-such\.img" not found — give the path of an \.img/)
      assert.equal(both.stderr.trim().split('\n').length, 1, both.stderr)
      const drive = await runCli(['os', 'flash', fixture.image, '--drive', path.join(scratch, 'no-such-folder', 'x'), '--yes'])
      assert.equal(drive.exitCode, 1)
      assert.match(drive.stderr, /no-such-folder\/x does not exist and its folder does not either/)
    })

    it('refuses a partition in place of the whole drive', async function () {
      execFileSync('dd', [`if=${fixture.image}`, `of=${target}`, 'bs=1M', 'count=4', 'conv=fsync', 'status=none'])
      sentinel = sha256Of(target, 4 * MiB)
      execFileSync('partx', ['--update', target])
      try {
        const result = await runCli(['os', 'flash', fixture.image, '--drive', `${target}p1`, '--yes', '--allow-system-drive'])
        assert.equal(result.exitCode, 1)
        assert.match(result.stderr, /is a partition of .* give the whole drive/)
      } finally {
        execFileSync('partx', ['--delete', target])
      }
    })
  })

  describe('the drive picker (no --drive, on a terminal)', function () {
    const sessions: TerminalSession[] = []
    let home: string
    let sentinel: string

    function onTerminal(args: string[]): TerminalSession {
      const session = new TerminalSession(args, {HOME: home, NO_COLOR: '1'})
      sessions.push(session)
      return session
    }

    before(function () {
      home = makeCliHome()
    })

    beforeEach(function () {
      execFileSync('dd', ['if=/dev/urandom', `of=${target}`, 'bs=1M', 'count=4', 'oflag=direct', 'status=none'])
      sentinel = sha256Of(target, 160 * MiB)
    })

    afterEach(function () {
      for (const session of sessions.splice(0)) session.kill()
      assert.equal(sha256Of(target, 160 * MiB), sentinel, 'the picker wrote to a drive')
    })

    after(function () {
      if (home) rmSync(home, {recursive: true, force: true})
    })

    it('lists the drives that may be flashed, and Ctrl-C cancels with exit 130 and nothing written', async function () {
      const listed = await runCli(['util', 'available-drives', '--json'])
      assert.equal(listed.exitCode, 0, listed.stderr)
      const drives = JSON.parse(listed.stdout) as Array<{device: string; mountpoints: string[]}>
      assert.ok(drives.some((drive) => drive.device === target), `util available-drives lists ${target}`)

      const picker = onTerminal(['os', 'flash', fixture.image, '--allow-system-drive'])
      await picker.waitFor(/Drive to erase/, 60_000)
      await picker.waitFor(new RegExp(`${target} \\(loop device, 168 MB\\)`))
      for (const drive of drives.filter((candidate) => candidate.mountpoints.includes('/'))) {
        assert.ok(!picker.output.includes(`${drive.device} (`), `the drive holding / (${drive.device}) is not offered`)
      }

      picker.type('\u0003')
      assert.equal(await picker.exited, 130, picker.output)
      assert.match(picker.output, /error: interrupted/)
    })

    it('says in one line that no drive can be flashed when none is removable, without --allow-system-drive', async function () {
      const listed = JSON.parse((await runCli(['util', 'available-drives', '--json'])).stdout) as Array<{removable: boolean}>
      if (listed.some((drive) => drive.removable)) this.skip() // a real card reader is plugged in: the picker would offer it
      const session = onTerminal(['os', 'flash', fixture.image])
      assert.equal(await session.exited, 1, session.output)
      const lines = session.output.trim().split(/\r?\n/)
      assert.deepEqual(lines, ['error: no drive can be flashed: plug in an SD card or USB drive (see "flotilla util available-drives")'])
    })
  })

  it('unmounts mounted partitions of the drive before writing (and config inject refuses them)', async function () {
    const backing = path.join(scratch, 'mounted.bin')
    copyFileSync(fixture.image, backing)
    sparseFile(backing, 160 * MiB)
    const device = loops.attach(backing)
    execFileSync('partx', ['--update', device])
    const mountpoint = path.join(scratch, 'rootA')
    mkdirSync(mountpoint)
    execFileSync('mount', [`${device}p2`, mountpoint])
    mounts.push(mountpoint)
    const configFile = path.join(scratch, 'inject.json')
    writeFileSync(configFile, JSON.stringify({apiEndpoint: 'http://127.0.0.1:7171', uuid: 'a'.repeat(32), deviceApiKey: 'key'}))
    const configWrite = await runCli(['config', 'inject', configFile, '--drive', device])
    assert.equal(configWrite.exitCode, 1)
    assert.match(configWrite.stderr, /has mounted partitions .* unmount them first/)
    const result = await runCli(['os', 'flash', fixture.image, '--drive', device, '--yes', '--allow-system-drive'])
    assert.equal(result.exitCode, 0, result.stderr)
    assert.match(result.stderr, new RegExp(`unmounted ${mountpoint}`))
    assert.ok(!readFileSync('/proc/self/mounts', 'utf8').includes(` ${mountpoint} `), `${mountpoint} is still mounted`)
  })
})
