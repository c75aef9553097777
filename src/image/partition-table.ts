import type {FileHandle} from 'node:fs/promises'

/** A partition of a disk image or drive, numbered as Linux numbers it. */
export interface Partition {
  /** 1-based: MBR primaries 1–4, logical ones from 5; GPT entries by their slot in the table. */
  index: number
  offset: number
  size: number
}

const SECTOR = 512
const MBR_SIGNATURE = 0xaa55
const GPT_PROTECTIVE_TYPE = 0xee
/** DOS (CHS and LBA) and Linux extended partition types: the containers of logical partitions. */
const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85])
/** More logical partitions than Linux will number: a chain this long loops or is corrupt. */
const MAX_LOGICAL = 256
const GPT_SIGNATURE = 'EFI PART'
/** Block sizes a GPT may be written for: its header sits at LBA 1, in the image's own blocks. */
const GPT_BLOCK_SIZES = [512, 1024, 2048, 4096]
const MAX_GPT_TABLE_BYTES = 1024 * 1024

async function readExactly(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length)
  const {bytesRead} = await handle.read(buffer, 0, length, position)
  if (bytesRead < length) throw new Error(`the disk ends at byte ${position + bytesRead}, inside its partition table`)
  return buffer
}

interface MbrEntry {
  /** 1–4: where in the record the entry sits. */
  slot: number
  type: number
  /** Bytes from the sector that holds the entry (primaries: from the start of the disk). */
  start: number
  size: number
}

/** The four entries of an MBR or of an extended boot record, empty ones left out. */
function mbrEntries(sector: Buffer): MbrEntry[] {
  if (sector.readUInt16LE(510) !== MBR_SIGNATURE) throw new Error('no MBR boot signature')
  const entries: MbrEntry[] = []
  for (let slot = 0; slot < 4; slot++) {
    const at = 446 + slot * 16
    entries.push({slot: slot + 1, type: sector[at + 4], start: sector.readUInt32LE(at + 8) * SECTOR, size: sector.readUInt32LE(at + 12) * SECTOR})
  }

  return entries.filter((entry) => entry.type !== 0)
}

/**
 * The logical partitions inside an extended one: a chain of extended boot records, each holding one logical partition
 * (its start relative to that record) and a link to the next record (relative to the extended partition's start).
 */
async function logicalPartitions(handle: FileHandle, extendedStart: number): Promise<Partition[]> {
  const partitions: Partition[] = []
  const seen = new Set<number>()
  for (let record: number | undefined = extendedStart; record !== undefined && partitions.length < MAX_LOGICAL; ) {
    if (seen.has(record)) throw new Error(`its logical partitions form a loop at byte ${record}`)
    seen.add(record)
    const entries = mbrEntries(await readExactly(handle, record, SECTOR))
    const logical = entries.find((entry) => !EXTENDED_TYPES.has(entry.type))
    if (logical) partitions.push({index: 5 + partitions.length, offset: record + logical.start, size: logical.size})
    const link = entries.find((entry) => EXTENDED_TYPES.has(entry.type))
    record = link ? extendedStart + link.start : undefined
  }

  return partitions
}

async function gptPartitions(handle: FileHandle): Promise<Partition[]> {
  for (const blockSize of GPT_BLOCK_SIZES) {
    const header = await readExactly(handle, blockSize, 92).catch(() => undefined)
    if (header?.toString('latin1', 0, 8) !== GPT_SIGNATURE) continue
    const tableStart = Number(header.readBigUInt64LE(72)) * blockSize
    const entryCount = header.readUInt32LE(80)
    const entrySize = header.readUInt32LE(84)
    if (entrySize < 128 || entryCount * entrySize > MAX_GPT_TABLE_BYTES) throw new Error(`its GPT header describes ${entryCount} entries of ${entrySize} bytes`)
    const table = await readExactly(handle, tableStart, entryCount * entrySize)
    const partitions: Partition[] = []
    for (let slot = 0; slot < entryCount; slot++) {
      const entry = table.subarray(slot * entrySize, (slot + 1) * entrySize)
      if (entry.subarray(0, 16).every((byte) => byte === 0)) continue
      const first = Number(entry.readBigUInt64LE(32))
      const last = Number(entry.readBigUInt64LE(40))
      if (last >= first) partitions.push({index: slot + 1, offset: first * blockSize, size: (last - first + 1) * blockSize})
    }

    return partitions
  }

  throw new Error('its protective MBR announces a GPT, but no GPT header follows')
}

/**
 * The partitions of a disk image or drive from its MBR (logical partitions included, extended containers not) or its
 * GPT, sorted by number. Throws (with the reason) when the first sector holds no partition table.
 */
export async function readPartitionTable(handle: FileHandle): Promise<Partition[]> {
  const primaries = mbrEntries(await readExactly(handle, 0, SECTOR))
  if (primaries[0]?.type === GPT_PROTECTIVE_TYPE) return gptPartitions(handle)
  const partitions: Partition[] = []
  for (const entry of primaries) {
    if (EXTENDED_TYPES.has(entry.type)) partitions.push(...(await logicalPartitions(handle, entry.start)))
    else partitions.push({index: entry.slot, offset: entry.start, size: entry.size})
  }

  return partitions.sort((a, b) => a.index - b.index)
}
