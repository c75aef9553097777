import type {FileHandle} from 'node:fs/promises'

import {ExpectedError} from '../errors.js'
import {readPartitionTable, type Partition} from './partition-table.js'

export type {Partition} from './partition-table.js'

export const BOOT_PARTITION_LABELS = ['resin-boot', 'balena-boot', 'flash-boot']

export interface BootPartition extends Partition {
  label?: string
  /** Why this partition was chosen, for messages. */
  reason: 'label' | 'device-type.json' | 'first partition'
}

/** The FAT volume label from a boot sector, or undefined when the sector is not a FAT boot sector. */
export function fatLabelOf(bootSector: Buffer): string | undefined {
  if (bootSector.length < 512 || bootSector[510] !== 0x55 || bootSector[511] !== 0xaa) return undefined
  // The file system type string sits at 0x36 on FAT12/16 and at 0x52 on FAT32; the label 11 bytes before it.
  for (const typeOffset of [0x52, 0x36]) {
    if (/^FAT(12|16|32)?\s*$/.test(bootSector.toString('latin1', typeOffset, typeOffset + 8))) {
      return bootSector.toString('latin1', typeOffset - 11, typeOffset).trim()
    }
  }

  return undefined
}

/** The partitions of a disk image or drive, logical ones included, in Linux's numbering. */
export async function listPartitions(handle: FileHandle): Promise<Partition[]> {
  try {
    return await readPartitionTable(handle)
  } catch (error) {
    throw new ExpectedError(`no partition table found (${(error as Error).message}) — is this a disk image?`, {cause: error})
  }
}

/**
 * The partition that holds config.json: the FAT partition labelled resin-boot/balena-boot/flash-boot, else the
 * FAT partition holding device-type.json, else partition 1.
 */
export async function findBootPartition(handle: FileHandle, hasDeviceTypeJson: (partition: Partition) => Promise<boolean>): Promise<BootPartition> {
  const partitions = await listPartitions(handle)
  if (partitions.length === 0) throw new ExpectedError('the partition table is empty — is this a disk image?')
  const fat: Array<Partition & {label: string}> = []
  for (const partition of partitions) {
    const sector = Buffer.alloc(512)
    await handle.read(sector, 0, 512, partition.offset)
    const label = fatLabelOf(sector)
    if (label !== undefined) fat.push({...partition, label})
  }

  const labelled = fat.find((partition) => BOOT_PARTITION_LABELS.includes(partition.label.toLowerCase()))
  if (labelled) return {...labelled, reason: 'label'}
  for (const partition of fat) {
    if (await hasDeviceTypeJson(partition)) return {...partition, reason: 'device-type.json'}
  }

  const first = fat.find((partition) => partition.index === 1)
  if (!first) throw new ExpectedError('no FAT boot partition found (no resin-boot/balena-boot/flash-boot label, no device-type.json, and partition 1 is not FAT)')
  return {...first, reason: 'first partition'}
}
