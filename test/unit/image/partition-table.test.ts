import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {open} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {readPartitionTable} from '../../../src/image/partition-table.js'
import {sparseFile} from '../../e2e/os-fixtures.js'

const MiB = 1024 * 1024

/** The partitions sfdisk reads in the image, as {index, offset, size} in bytes, extended containers left out. */
function sfdiskPartitions(image: string): Array<{index: number; offset: number; size: number}> {
  const {partitiontable} = JSON.parse(execFileSync('sfdisk', ['--json', image], {encoding: 'utf8'})) as {
    partitiontable: {sectorsize?: number; partitions: Array<{node: string; start: number; size: number; type: string}>}
  }
  const sector = partitiontable.sectorsize ?? 512
  return partitiontable.partitions
    .filter((partition) => !['5', 'f', '85'].includes(partition.type))
    .map((partition) => ({index: Number(/(\d+)$/.exec(partition.node)![1]), offset: partition.start * sector, size: partition.size * sector}))
}

describe('image/partition-table readPartitionTable', function () {
  let scratch: string

  before(function () {
    scratch = mkdtempSync(path.join(tmpdir(), 'flotilla-partitions-'))
  })

  after(function () {
    rmSync(scratch, {recursive: true, force: true})
  })

  async function partitionsOf(image: string) {
    const handle = await open(image, 'r')
    try {
      return await readPartitionTable(handle)
    } finally {
      await handle.close()
    }
  }

  function imageWith(name: string, layout: string): string {
    const image = sparseFile(path.join(scratch, name), 64 * MiB)
    execFileSync('sfdisk', ['--quiet', image], {input: layout})
    return image
  }

  it('reads an MBR with primaries and logical partitions as sfdisk does, numbering the logical ones from 5', async function () {
    const image = imageWith('mbr.img', 'label: dos\nstart=2048, size=8192, type=c\nstart=10240, size=8192, type=83\nstart=18432, type=5\nstart=20480, size=4096, type=83\nstart=26624, size=4096, type=83\nstart=32768, type=83\n')
    const partitions = await partitionsOf(image)
    assert.deepEqual(partitions, sfdiskPartitions(image))
    assert.deepEqual(partitions.map((partition) => partition.index), [1, 2, 5, 6, 7])
  })

  it('reads a GPT by slot, a gap in the slots included, as sfdisk does', async function () {
    const image = imageWith('gpt.img', 'label: gpt\nstart=2048, size=8192, type=uefi\nstart=10240, size=8192, type=linux\n/dev/x4 : start=18432, size=8192, type=linux\n')
    const partitions = await partitionsOf(image)
    assert.deepEqual(partitions, sfdiskPartitions(image))
    assert.deepEqual(partitions.map((partition) => partition.index), [1, 2, 4])
  })

  it('says why a disk has no partition table it can read, and stops at a chain of logical partitions that loops', async function () {
    const blank = sparseFile(path.join(scratch, 'blank.img'), MiB)
    await assert.rejects(partitionsOf(blank), /no MBR boot signature/)
    const short = path.join(scratch, 'short.img')
    writeFileSync(short, Buffer.alloc(100))
    await assert.rejects(partitionsOf(short), /ends at byte 100/)

    const looping = imageWith('loop.img', 'label: dos\nstart=2048, type=5\nstart=4096, size=2048, type=83\n')
    const handle = await open(looping, 'r+')
    try {
      // The first extended boot record's link entry pointed back at itself.
      const record = Buffer.alloc(512)
      await handle.read(record, 0, 512, 2048 * 512)
      record.writeUInt8(0x05, 446 + 16 + 4)
      record.writeUInt32LE(0, 446 + 16 + 8)
      record.writeUInt32LE(2048, 446 + 16 + 12)
      await handle.write(record, 0, 512, 2048 * 512)
    } finally {
      await handle.close()
    }

    await assert.rejects(partitionsOf(looping), /loop/)
  })
})
