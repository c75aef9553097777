import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {open} from 'node:fs/promises'

import {listPartitions} from '../../../src/image/boot-partition.js'
import {fatUsedRanges, filesystemMappedRanges} from '../../../src/image/filesystem-map.js'
import {makeDiskFixture, type DiskFixture} from '../../e2e/os-fixtures.js'

describe('image/filesystem-map', function () {
  this.timeout(60_000)
  let fixture: DiskFixture

  before(function () {
    fixture = makeDiskFixture(128, '')
  })

  after(function () {
    fixture?.cleanup()
  })

  it('leaves out free FAT clusters and ext4 blocks, and keeps every byte that is not zero', async function () {
    const handle = await open(fixture.image, 'r')
    const size = (await handle.stat()).size
    const ranges = await filesystemMappedRanges(handle, size)
    await handle.close()
    const mapped = ranges.reduce((sum, range) => sum + range.end - range.start, 0)
    assert.ok(mapped < size / 2, `${mapped} of ${size} bytes mapped`)
    assert.ok(mapped >= 3 * 1024 * 1024, 'the payloads alone are 3 MiB')
    const image = readFileSync(fixture.image)
    let position = 0
    for (const range of [...ranges, {start: size, end: size}]) {
      assert.ok(range.start >= position, 'ranges are in order and apart')
      const gap = image.subarray(position, range.start)
      assert.equal(gap.findIndex((byte) => byte !== 0), -1, `data between ${position} and ${range.start} would not be written`)
      position = range.end
    }
  })

  it('keeps the whole of an image it cannot read as a disk', async function () {
    const handle = await open(fixture.image + '.bmap', 'r')
    const size = (await handle.stat()).size
    assert.deepEqual(await filesystemMappedRanges(handle, size), [{start: 0, end: size}])
    await handle.close()
  })

  it('finds what the FAT boot partition uses: inside it, less than all of it, and every byte that is not zero', async function () {
    const handle = await open(fixture.image, 'r')
    const [boot] = await listPartitions(handle)
    const used = await fatUsedRanges(handle)
    await handle.close()
    const usedBytes = used.reduce((sum, range) => sum + range.end - range.start, 0)
    assert.ok(used.every((range) => range.start >= boot.offset && range.end <= boot.offset + boot.size), 'only the FAT partition')
    assert.ok(usedBytes < boot.size / 4, `${usedBytes} of the partition's ${boot.size} bytes used`)
    const partition = readFileSync(fixture.image).subarray(boot.offset, boot.offset + boot.size)
    let position = 0
    for (const range of [...used.map(({start, end}) => ({start: start - boot.offset, end: end - boot.offset})), {start: boot.size, end: boot.size}]) {
      assert.equal(partition.subarray(position, range.start).findIndex((byte) => byte !== 0), -1, `data between ${position} and ${range.start} would not be written`)
      position = range.end
    }
  })
})
