import type {FileHandle} from 'node:fs/promises'

import type {ByteRange} from './bmap.js'
import {fatLabelOf, listPartitions, type Partition} from './boot-partition.js'

/** The parts of [start, end) that none of the sorted `free` ranges covers. */
function rangesOutside(free: ByteRange[], start: number, end: number): ByteRange[] {
  const kept: ByteRange[] = []
  let position = start
  for (const range of free) {
    if (range.start > position) kept.push({start: position, end: Math.min(range.start, end)})
    position = Math.max(position, range.end)
    if (position >= end) break
  }

  if (position < end) kept.push({start: position, end})
  return kept.filter((range) => range.end > range.start)
}

/**
 * Which bytes of a raw image hold data, from its file systems' own allocation tables: free clusters of FAT partitions
 * and free blocks of ext2/3/4 partitions are left out; everything else (partition tables, boot loaders in gaps,
 * unknown file systems) counts as data. Anything this does not fully understand is kept whole.
 */
export async function filesystemMappedRanges(handle: FileHandle, imageSize: number): Promise<ByteRange[]> {
  const free: ByteRange[] = []
  for (const partition of await listPartitions(handle).catch(() => [])) {
    if (partition.offset + partition.size > imageSize) continue
    free.push(...(await fatFreeRanges(handle, partition)), ...(await extFreeRanges(handle, partition)))
  }

  return rangesOutside(free.sort((a, b) => a.start - b.start), 0, imageSize)
}

/**
 * The bytes of each FAT partition that its file system uses (all of the partition when its FAT cannot be read): where
 * `os configure` and `config write` change an image after its bmap was made.
 */
export async function fatUsedRanges(handle: FileHandle): Promise<ByteRange[]> {
  const partitions = await listPartitions(handle).catch(() => [])
  const used = await Promise.all(
    partitions.map(async (partition) => {
      const sector = Buffer.alloc(512)
      await handle.read(sector, 0, 512, partition.offset)
      if (fatLabelOf(sector) === undefined) return []
      return rangesOutside(await fatFreeRanges(handle, partition), partition.offset, partition.offset + partition.size)
    }),
  )
  return used.flat()
}

/** Runs of set-or-clear items as byte ranges: `isFree(i)` for items 0..count-1, each `itemBytes` long from `base`. */
function freeRuns(count: number, isFree: (index: number) => boolean, base: number, itemBytes: number): ByteRange[] {
  const runs: ByteRange[] = []
  let start = -1
  for (let index = 0; index <= count; index++) {
    const itemFree = index < count && isFree(index)
    if (itemFree && start < 0) start = index
    if (!itemFree && start >= 0) {
      runs.push({start: base + start * itemBytes, end: base + index * itemBytes})
      start = -1
    }
  }

  return runs
}

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length)
  const {bytesRead} = await handle.read(buffer, 0, length, position)
  return bytesRead === length ? buffer : Buffer.alloc(0)
}

async function fatFreeRanges(handle: FileHandle, partition: Partition): Promise<ByteRange[]> {
  const boot = await readAt(handle, partition.offset, 512)
  if (boot.length < 512 || boot[510] !== 0x55 || boot[511] !== 0xaa) return []
  const bytesPerSector = boot.readUInt16LE(0x0b)
  const sectorsPerCluster = boot.readUInt8(0x0d)
  const reservedSectors = boot.readUInt16LE(0x0e)
  const fatCount = boot.readUInt8(0x10)
  const rootEntries = boot.readUInt16LE(0x11)
  const totalSectors = boot.readUInt16LE(0x13) || boot.readUInt32LE(0x20)
  const fatSectors = boot.readUInt16LE(0x16) || boot.readUInt32LE(0x24)
  const isFatSignature = /^FAT/.test(boot.toString('latin1', 0x36, 0x39)) || /^FAT32/.test(boot.toString('latin1', 0x52, 0x57))
  if (!isFatSignature || ![512, 1024, 2048, 4096].includes(bytesPerSector) || sectorsPerCluster === 0 || fatCount === 0 || fatSectors === 0) return []
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector)
  const dataStartSector = reservedSectors + fatCount * fatSectors + rootDirSectors
  const clusters = Math.floor((totalSectors - dataStartSector) / sectorsPerCluster)
  if (clusters <= 0 || totalSectors * bytesPerSector > partition.size) return []
  const fat = await readAt(handle, partition.offset + reservedSectors * bytesPerSector, fatSectors * bytesPerSector)
  const bits = clusters < 4085 ? 12 : clusters < 65525 ? 16 : 32
  if (fat.length === 0 || Math.ceil(((clusters + 2) * bits) / 8) > fat.length) return []
  const entry = (cluster: number): number => {
    if (bits === 32) return fat.readUInt32LE(cluster * 4) & 0x0fffffff
    if (bits === 16) return fat.readUInt16LE(cluster * 2)
    const pair = fat.readUInt16LE(Math.floor((cluster * 3) / 2))
    return cluster % 2 === 0 ? pair & 0xfff : pair >> 4
  }

  const clusterBytes = sectorsPerCluster * bytesPerSector
  return freeRuns(clusters, (index) => entry(index + 2) === 0, partition.offset + dataStartSector * bytesPerSector, clusterBytes)
}

const EXT_MAGIC = 0xef53
const INCOMPAT_META_BG = 0x10
const INCOMPAT_64BIT = 0x80
const RO_COMPAT_SPARSE_SUPER = 0x1
const RO_COMPAT_GDT_CSUM = 0x10
const RO_COMPAT_BIGALLOC = 0x200
const RO_COMPAT_METADATA_CSUM = 0x400
const COMPAT_SPARSE_SUPER2 = 0x200
const BG_BLOCK_UNINIT = 0x2

function isPowerOf(value: number, base: number): boolean {
  let power = 1
  while (power < value) power *= base
  return power === value
}

async function extFreeRanges(handle: FileHandle, partition: Partition): Promise<ByteRange[]> {
  const superblock = await readAt(handle, partition.offset + 1024, 1024)
  if (superblock.length === 0 || superblock.readUInt16LE(0x38) !== EXT_MAGIC) return []
  const compat = superblock.readUInt32LE(0x5c)
  const incompat = superblock.readUInt32LE(0x60)
  const roCompat = superblock.readUInt32LE(0x64)
  // Layouts whose bitmaps mean something else (clusters), or whose metadata sits where this does not look: kept whole.
  if (roCompat & RO_COMPAT_BIGALLOC || incompat & INCOMPAT_META_BG || compat & COMPAT_SPARSE_SUPER2) return []
  const is64 = Boolean(incompat & INCOMPAT_64BIT)
  const blockSize = 1024 << superblock.readUInt32LE(0x18)
  const blocksCount = superblock.readUInt32LE(0x04) + (is64 ? superblock.readUInt32LE(0x150) * 2 ** 32 : 0)
  const firstDataBlock = superblock.readUInt32LE(0x14)
  const blocksPerGroup = superblock.readUInt32LE(0x20)
  const inodesPerGroup = superblock.readUInt32LE(0x28)
  const inodeSize = superblock.readUInt16LE(0x58) || 128
  const descriptorSize = is64 ? superblock.readUInt16LE(0xfe) || 64 : 32
  const reservedGdtBlocks = superblock.readUInt16LE(0xce)
  if (blockSize > 65536 || blocksPerGroup === 0 || blocksPerGroup > blockSize * 8 || blocksCount * blockSize > partition.size) return []
  const groups = Math.ceil((blocksCount - firstDataBlock) / blocksPerGroup)
  const gdtBlocks = Math.ceil((groups * descriptorSize) / blockSize)
  const descriptors = await readAt(handle, partition.offset + (firstDataBlock + 1) * blockSize, gdtBlocks * blockSize)
  if (descriptors.length === 0) return []
  const uninitIsValid = Boolean(roCompat & (RO_COMPAT_GDT_CSUM | RO_COMPAT_METADATA_CSUM))
  const inodeTableBlocks = Math.ceil((inodesPerGroup * inodeSize) / blockSize)
  const number = (descriptor: number, low: number, high: number) =>
    descriptors.readUInt32LE(descriptor + low) + (is64 && descriptorSize >= 64 ? descriptors.readUInt32LE(descriptor + high) * 2 ** 32 : 0)
  const metadata: ByteRange[] = []
  for (let group = 0; group < groups; group++) {
    const descriptor = group * descriptorSize
    metadata.push(
      {start: number(descriptor, 0x0, 0x20), end: number(descriptor, 0x0, 0x20) + 1},
      {start: number(descriptor, 0x4, 0x24), end: number(descriptor, 0x4, 0x24) + 1},
      {start: number(descriptor, 0x8, 0x28), end: number(descriptor, 0x8, 0x28) + inodeTableBlocks},
    )
  }

  const hasSuperblockCopy = (group: number) => group <= 1 || !(roCompat & RO_COMPAT_SPARSE_SUPER) || isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7)
  const free: ByteRange[] = []
  for (let group = 0; group < groups; group++) {
    const first = firstDataBlock + group * blocksPerGroup
    const count = Math.min(blocksPerGroup, blocksCount - first)
    const descriptor = group * descriptorSize
    const flags = descriptors.readUInt16LE(descriptor + 0x12)
    let used: (index: number) => boolean
    if (flags & BG_BLOCK_UNINIT && uninitIsValid) {
      // An uninitialised bitmap: as the kernel does, the group holds only its superblock and descriptor copies and
      // whatever group metadata lies inside it (here: any group's, to stay on the safe side with flex_bg).
      const baseBlocks = hasSuperblockCopy(group) ? 1 + gdtBlocks + reservedGdtBlocks : 0
      const inside = metadata.filter((range) => range.end > first && range.start < first + count)
      used = (index) => index < baseBlocks || inside.some((range) => first + index >= range.start && first + index < range.end)
    } else {
      const bitmap = await readAt(handle, partition.offset + number(descriptor, 0x0, 0x20) * blockSize, blockSize)
      if (bitmap.length === 0) return []
      used = (index) => (bitmap[index >> 3] & (1 << (index & 7))) !== 0
    }

    free.push(...freeRuns(count, (index) => !used(index), partition.offset + first * blockSize, blockSize))
  }

  return free
}
