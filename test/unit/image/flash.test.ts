import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {gzipSync} from 'node:zlib'

import type {BlockMap} from '../../../src/image/bmap.js'
import {ExpectedError} from '../../../src/errors.js'
import {flashImage, VerificationError, type BlockWriter, type FlashProgress} from '../../../src/image/flash.js'
import {openImageSource} from '../../../src/image/sources.js'

const MiB = 1024 * 1024

/** 5 MiB and a bit: data in the first and fourth MiB and in the odd-sized tail, zeros elsewhere. */
function makeImage(directory: string): {image: string; content: Buffer; map: BlockMap} {
  const content = Buffer.alloc(5 * MiB + 1000)
  randomBytes(MiB).copy(content, 0)
  randomBytes(MiB).copy(content, 3 * MiB)
  randomBytes(1000).copy(content, 5 * MiB)
  const image = path.join(directory, 'os.img')
  writeFileSync(image, content)
  writeFileSync(`${image}.gz`, gzipSync(content))
  const ranges = [{start: 0, end: MiB}, {start: 3 * MiB, end: 4 * MiB}, {start: 5 * MiB, end: 5 * MiB + 1000}]
  return {image, content, map: {imageSize: content.length, blockSize: 4096, ranges, mappedBytes: 2 * MiB + 1000}}
}

function corrupt(file: string, position: number): void {
  const fd = openSync(file, 'r+')
  writeSync(fd, Buffer.from('corrupted!'), 0, 10, position)
  closeSync(fd)
}

describe('image/flash flashImage', function () {
  this.timeout(30_000)
  let directory: string
  let fixture: ReturnType<typeof makeImage>

  before(function () {
    directory = mkdtempSync(path.join(tmpdir(), 'flotilla-flash-unit-'))
    fixture = makeImage(directory)
  })

  after(function () {
    rmSync(directory, {recursive: true, force: true})
  })

  for (const suffix of ['', '.gz']) {
    it(`writes the ${suffix || 'raw'} image to a file, every byte, and reports progress for both phases`, async function () {
      const destination = path.join(directory, `full${suffix}.img`)
      const source = await openImageSource(fixture.image + suffix)
      const events: FlashProgress[] = []
      const result = await flashImage({source, target: {path: destination, isBlockDevice: false}, verify: true, onProgress: (event) => events.push(event)})
      await source.close()
      assert.deepEqual(readFileSync(destination), fixture.content)
      assert.equal(result.imageSize, fixture.content.length)
      assert.equal(result.bytesWritten, fixture.content.length)
      assert.equal(result.verified, true)
      // Each phase ends on its final event; a periodic event may also have reached 1 on a slow machine.
      assert.deepEqual(
        events.map((event) => event.phase).filter((phase, index, phases) => phase !== phases[index - 1]),
        ['write', 'verify'],
      )
      for (const phase of ['write', 'verify']) {
        const last = events.filter((event) => event.phase === phase).at(-1)
        assert.deepEqual([last?.fraction, last?.bytes], [1, fixture.content.length], phase)
      }
    })

    it(`writes only the mapped ranges of the ${suffix || 'raw'} image with a block map`, async function () {
      const destination = path.join(directory, `sparse${suffix}.img`)
      writeFileSync(destination, Buffer.alloc(fixture.content.length, 0xee))
      const source = await openImageSource(fixture.image + suffix)
      const result = await flashImage({source, target: {path: destination, isBlockDevice: false}, blockMap: fixture.map, verify: true})
      await source.close()
      assert.equal(result.bytesWritten, fixture.map.mappedBytes)
      assert.equal(result.sparse, true)
      assert.deepEqual(readFileSync(destination), fixture.content)
    })
  }

  it('catches a destination that does not hold what was written, naming the byte range, and keeps the final name free', async function () {
    const destination = path.join(directory, 'corrupt.img')
    const source = await openImageSource(fixture.image)
    const flashing = flashImage({
      source,
      target: {path: destination, isBlockDevice: false},
      verify: true,
      beforeVerify: async () => corrupt(`${destination}.${process.pid}.flotilla-partial`, 3 * MiB + 77),
    })
    await assert.rejects(flashing, (error: unknown) => error instanceof VerificationError && /bytes 3145728-4194303 of .*corrupt\.img differ/.test(error.message))
    await source.close()
    assert.throws(() => readFileSync(destination), /ENOENT/)
  })

  it('fails a block map that belongs to another image before writing anything', async function () {
    const source = await openImageSource(fixture.image)
    const flashing = flashImage({source, target: {path: path.join(directory, 'x.img'), isBlockDevice: false}, blockMap: {...fixture.map, imageSize: 999}, verify: true})
    await assert.rejects(flashing, /block map is for another image/)
    await source.close()
  })

  describe('transient write errors', function () {
    const failure = (code: string) => Object.assign(new Error(`${code}: i/o error, write`), {code})

    /** A drive that fails each write at `offset` with `code`, `failures` times (forever with Infinity), then writes. */
    function flakyWriter(offset: number, code: string, failures: number): {writeBlock: BlockWriter; attempts: () => number} {
      let attempts = 0
      return {
        attempts: () => attempts,
        async writeBlock(handle, buffer, bufferOffset, length, position) {
          if (position === offset) {
            attempts++
            if (attempts <= failures) throw failure(code)
          }

          return (await handle.write(buffer, bufferOffset, length, position)).bytesWritten
        },
      }
    }

    for (const code of ['EIO', 'EBUSY']) {
      it(`retries a write that fails with ${code} twice, then succeeds, and the image is whole`, async function () {
        const destination = path.join(directory, `flaky-${code}.img`)
        const source = await openImageSource(fixture.image)
        const drive = flakyWriter(3 * MiB, code, 2)
        const result = await flashImage({source, target: {path: destination, isBlockDevice: false}, verify: true, writeBlock: drive.writeBlock})
        await source.close()
        assert.equal(drive.attempts(), 3)
        assert.equal(result.verified, true)
        assert.deepEqual(readFileSync(destination), fixture.content)
      })
    }

    it('reports a drive whose writes keep failing as unplugged or failing, naming the offset, and leaves no file', async function () {
      const destination = path.join(directory, 'failing.img')
      const source = await openImageSource(fixture.image)
      const drive = flakyWriter(3 * MiB, 'EIO', Number.POSITIVE_INFINITY)
      const flashing = flashImage({source, target: {path: destination, isBlockDevice: false}, verify: true, writeBlock: drive.writeBlock})
      await assert.rejects(flashing, (error: unknown) => {
        assert.ok(error instanceof ExpectedError, String(error))
        assert.match(error.message, /^writing at byte 3145728 of .*failing\.img failed 4 times \(EIO\): the drive was unplugged or is failing — check its connection and flash again, or try another card$/)
        return true
      })
      await source.close()
      assert.equal(drive.attempts(), 4, 'the first try and three retries')
      assert.throws(() => readFileSync(destination), /ENOENT/)
    })

    it('does not retry an error that is not transient', async function () {
      const source = await openImageSource(fixture.image)
      const drive = flakyWriter(0, 'ENOSPC', Number.POSITIVE_INFINITY)
      const flashing = flashImage({source, target: {path: path.join(directory, 'full-disk.img'), isBlockDevice: false}, verify: true, writeBlock: drive.writeBlock})
      await assert.rejects(flashing, /^ExpectedError: writing at byte 0 of .*full-disk\.img failed: ENOSPC/)
      await source.close()
      assert.equal(drive.attempts(), 1)
    })
  })

  describe('on a loop device (needs root)', function () {
    let device: string

    before(function () {
      const backing = path.join(directory, 'loop.bin')
      writeFileSync(backing, Buffer.alloc(8 * MiB))
      device = execFileSync('losetup', ['--find', '--show', backing], {encoding: 'utf8'}).trim()
    })

    after(function () {
      if (device) execFileSync('losetup', ['--detach', device])
    })

    it('writes with direct I/O, pads the odd tail to a whole sector, and verifies', async function () {
      const source = await openImageSource(`${fixture.image}.gz`)
      const result = await flashImage({source, target: {path: device, isBlockDevice: true, size: 8 * MiB, sectorSize: 512}, verify: true})
      await source.close()
      assert.equal(result.directIo, true)
      const written = readFileSync(device).subarray(0, fixture.content.length)
      assert.ok(written.equals(fixture.content))
    })

    it('catches corruption on the device', async function () {
      const source = await openImageSource(fixture.image)
      const flashing = flashImage({
        source,
        target: {path: device, isBlockDevice: true, size: 8 * MiB, sectorSize: 512},
        verify: true,
        beforeVerify: async () => {
          const fd = openSync(device, 'r+')
          writeSync(fd, Buffer.from('corrupted!'), 0, 10, 100)
          execFileSync('sync')
          closeSync(fd)
        },
      })
      await assert.rejects(flashing, /verification failed: bytes 0-1048575 of \/dev\/loop\d+ differ/)
      await source.close()
    })

    it('refuses an image larger than the device', async function () {
      const source = await openImageSource(fixture.image)
      await assert.rejects(flashImage({source, target: {path: device, isBlockDevice: true, size: 4 * MiB, sectorSize: 512}, verify: true}), /the image \(5.2 MB\) is larger than \/dev\/loop\d+ \(4.2 MB\)/)
      await source.close()
    })
  })
})
