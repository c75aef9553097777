import type {FileHandle} from 'node:fs/promises'

import type {Partition} from './boot-partition.js'

const FSINFO_LEAD_SIGNATURE = 0x41615252
const FSINFO_STRUCT_SIGNATURE = 0x61417272

/**
 * Brings a FAT volume back to what fsck.fat and other systems expect after fatfs wrote to it: fatfs updates only the first
 * file allocation table and leaves FAT32's free-cluster count as it was. Copies the first table over the others and
 * recounts the free clusters.
 */
export async function syncFatCopies(handle: FileHandle, partition: Partition): Promise<void> {
  const boot = Buffer.alloc(512)
  await handle.read(boot, 0, 512, partition.offset)
  const bytesPerSector = boot.readUInt16LE(0x0b)
  const sectorsPerCluster = boot.readUInt8(0x0d)
  const reservedSectors = boot.readUInt16LE(0x0e)
  const fatCount = boot.readUInt8(0x10)
  const rootEntries = boot.readUInt16LE(0x11)
  const totalSectors = boot.readUInt16LE(0x13) || boot.readUInt32LE(0x20)
  const isFat32 = boot.readUInt16LE(0x16) === 0
  const fatSectors = boot.readUInt16LE(0x16) || boot.readUInt32LE(0x24)
  if (!bytesPerSector || !sectorsPerCluster || fatCount < 1) return
  const fatBytes = fatSectors * bytesPerSector
  const firstFat = Buffer.alloc(fatBytes)
  await handle.read(firstFat, 0, fatBytes, partition.offset + reservedSectors * bytesPerSector)
  for (let copy = 1; copy < fatCount; copy++) {
    await handle.write(firstFat, 0, fatBytes, partition.offset + (reservedSectors + copy * fatSectors) * bytesPerSector)
  }

  if (!isFat32) return
  const rootDirSectors = Math.ceil((rootEntries * 32) / bytesPerSector)
  const clusters = Math.floor((totalSectors - reservedSectors - fatCount * fatSectors - rootDirSectors) / sectorsPerCluster)
  let free = 0
  for (let cluster = 2; cluster < clusters + 2 && cluster * 4 + 4 <= fatBytes; cluster++) {
    if ((firstFat.readUInt32LE(cluster * 4) & 0x0fffffff) === 0) free++
  }

  const infoSector = boot.readUInt16LE(0x30)
  if (infoSector === 0 || infoSector === 0xffff) return
  const info = Buffer.alloc(512)
  const infoPosition = partition.offset + infoSector * bytesPerSector
  await handle.read(info, 0, 512, infoPosition)
  if (info.readUInt32LE(0) !== FSINFO_LEAD_SIGNATURE || info.readUInt32LE(484) !== FSINFO_STRUCT_SIGNATURE) return
  info.writeUInt32LE(free, 488)
  await handle.write(info, 0, 512, infoPosition)
}
