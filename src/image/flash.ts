import {constants, existsSync} from 'node:fs'
import {open, rename, rm, type FileHandle} from 'node:fs/promises'
import {setTimeout as delay} from 'node:timers/promises'

import {xxh64} from '@node-rs/xxhash'

import {ExpectedError, InterruptedError} from '../errors.js'
import {allocateDirectBuffers} from './aligned-memory.js'
import type {BlockMap, ByteRange} from './bmap.js'
import {formatBytes} from './format.js'
import type {ImageSource} from './sources.js'

export interface FlashProgress {
  phase: 'write' | 'verify'
  /** Image bytes written (or verified) so far. */
  bytes: number
  /** Image bytes this phase will handle, when known. */
  total?: number
  /** 0..1, from `total` or, for streams of unknown size, from how much of the file has been read. */
  fraction?: number
  bytesPerSecond: number
}

export interface FlashTarget {
  path: string
  isBlockDevice: boolean
  /** Capacity in bytes (block devices). */
  size?: number
  /** The device's logical sector size: direct transfers are whole sectors. */
  sectorSize?: number
}

/** Writes part of a buffer at a position of the destination, returning the bytes written: `FileHandle.write`'s job. */
export type BlockWriter = (handle: FileHandle, buffer: Buffer, offset: number, length: number, position: number) => Promise<number>

const handleWrite: BlockWriter = async (handle, buffer, offset, length, position) => (await handle.write(buffer, offset, length, position)).bytesWritten

export interface FlashOptions {
  source: ImageSource
  target: FlashTarget
  /** Only these ranges are written and verified (from a .bmap); without it, every byte. */
  blockMap?: BlockMap
  verify: boolean
  onProgress?: (progress: FlashProgress) => void
  signal?: AbortSignal
  /** Runs once everything is written and flushed, before reading it back. */
  beforeVerify?: () => Promise<void>
  /** Replaces the writes to the destination (tests simulate a failing drive with it). */
  writeBlock?: BlockWriter
}

export interface FlashResult {
  imageSize: number
  bytesWritten: number
  sparse: boolean
  verified: boolean
  directIo: boolean
  /** Why writes went through the page cache, when they did on a block device. */
  directIoUnavailable?: string
  writeMs: number
  verifyMs: number
}

/** A verification failure: the drive does not hold what was written. */
export class VerificationError extends ExpectedError {
  constructor(
    readonly target: string,
    readonly range: ByteRange,
  ) {
    super(`verification failed: bytes ${range.start}-${range.end - 1} of ${target} differ from the image — the card may be failing or counterfeit; try another one`)
  }
}

const BLOCK_SIZE = 1024 * 1024
const WRITE_DEPTH = 4
const POOL_SIZE = WRITE_DEPTH + 4
const PROGRESS_INTERVAL_MS = 200
const RETRIED_ERRORS = new Set(['EIO', 'EBUSY', 'EAGAIN', 'ETIMEDOUT'])
const RETRIES = 3
/** The first pause before a retry; it doubles after each (0.1 s, 0.2 s, 0.4 s). */
const RETRY_DELAY_MS = 100

interface Block {
  buffer: Buffer
  offset: number
  length: number
}

interface WrittenBlock {
  offset: number
  length: number
  hash: bigint
}

/** A fixed set of buffers handed out in turn: bounds memory and makes reading wait for writing when it gets ahead. */
class BufferPool {
  private readonly waiting: Array<(buffer: Buffer) => void> = []

  constructor(private readonly free: Buffer[]) {}

  async acquire(): Promise<Buffer> {
    const buffer = this.free.pop()
    if (buffer) return buffer
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  release(buffer: Buffer): void {
    const next = this.waiting.shift()
    if (next) next(buffer)
    else this.free.push(buffer)
  }
}

class ProgressMeter {
  private last = 0
  private readonly started = Date.now()

  constructor(
    private readonly phase: FlashProgress['phase'],
    private readonly total: number | undefined,
    private readonly fraction: () => number | undefined,
    private readonly emit?: (progress: FlashProgress) => void,
  ) {}

  update(bytes: number, final = false): void {
    const now = Date.now()
    if (!this.emit || (!final && now - this.last < PROGRESS_INTERVAL_MS)) return
    this.last = now
    const seconds = Math.max((now - this.started) / 1000, 0.001)
    const fraction = this.total ? bytes / this.total : this.fraction()
    this.emit({phase: this.phase, bytes, total: this.total, fraction: final ? 1 : fraction, bytesPerSecond: Math.round(bytes / seconds)})
  }
}

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new InterruptedError('flashing interrupted — the drive holds a partial image and will not boot; flash it again')
}

/**
 * Runs a transfer, retrying the errors a card reader gives while it is being jostled or is busy (EIO, EBUSY…) a few
 * times with a growing pause. A drive that is gone, or keeps failing, is reported as unplugged or failing at `offset`.
 */
/** A file being written or read: the name messages give, and the path that exists while it is (a file destination is written beside its name). */
interface Place {
  name: string
  path: string
}

async function transferWithRetries(place: Place, operation: () => Promise<number>, describe: string, offset: number): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await operation()
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? ''
      if (RETRIED_ERRORS.has(code) && attempt < RETRIES) {
        await delay(RETRY_DELAY_MS * 2 ** attempt)
        continue
      }

      const target = place.name
      if (!existsSync(place.path) || code === 'ENODEV' || code === 'ENXIO') throw new ExpectedError(`the drive ${target} went away while ${describe} at byte ${offset} — was it unplugged?`, {cause: error})
      if (RETRIED_ERRORS.has(code)) {
        throw new ExpectedError(`${describe} at byte ${offset} of ${target} failed ${attempt + 1} times (${code}): the drive was unplugged or is failing — check its connection and flash again, or try another card`, {cause: error})
      }

      throw new ExpectedError(`${describe} at byte ${offset} of ${target} failed: ${(error as Error).message}`, {cause: error})
    }
  }
}

async function writeFully(target: Place, handle: FileHandle, buffer: Buffer, length: number, position: number, writeBlock: BlockWriter): Promise<void> {
  let done = 0
  while (done < length) {
    done += await transferWithRetries(target, () => writeBlock(handle, buffer, done, length - done, position + done), 'writing', position + done)
  }
}

async function readFully(target: Place, handle: FileHandle, buffer: Buffer, length: number, position: number): Promise<number> {
  let done = 0
  while (done < length) {
    const read = await transferWithRetries(target, async () => (await handle.read(buffer, done, length - done, position + done)).bytesRead, 'reading', position + done)
    if (read === 0) break
    done += read
  }

  return done
}

function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple
}

/** Reads a raw image only where the ranges say, straight into the pool's buffers. */
async function* rawBlocks(source: ImageSource, ranges: ByteRange[], pool: BufferPool): AsyncGenerator<Block> {
  for (const range of ranges) {
    for (let offset = range.start; offset < range.end; offset += BLOCK_SIZE) {
      const length = Math.min(BLOCK_SIZE, range.end - offset)
      const buffer = await pool.acquire()
      const read = await readFully({name: source.path, path: source.path}, source.file!, buffer, length, offset)
      if (read < length) throw new ExpectedError(`${source.path} ended at byte ${offset + read}, before the ${range.end} bytes its block map covers`)
      yield {buffer, offset, length}
    }
  }
}

/**
 * Cuts a decompressed stream into blocks inside the ranges, skipping what lies between them. `ranges` ends with an
 * open range (end = Infinity) when the image size is not known before the stream ends.
 */
async function* streamBlocks(source: ImageSource, ranges: ByteRange[], pool: BufferPool, onEnd: (size: number) => void): AsyncGenerator<Block> {
  const stream = await source.stream()
  let position = 0
  let rangeIndex = 0
  let block: Block | undefined
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let used = 0
      while (used < chunk.length && rangeIndex < ranges.length) {
        const range = ranges[rangeIndex]
        if (position < range.start) {
          const skipped = Math.min(chunk.length - used, range.start - position)
          used += skipped
          position += skipped
          continue
        }

        if (!block) block = {buffer: await pool.acquire(), offset: position, length: 0}
        const copied = Math.min(chunk.length - used, range.end - position, BLOCK_SIZE - block.length)
        chunk.copy(block.buffer, block.length, used, used + copied)
        block.length += copied
        used += copied
        position += copied
        if (position === range.end) rangeIndex++
        if (block.length === BLOCK_SIZE || position === range.end) {
          yield block
          block = undefined
        }
      }

      position += chunk.length - used
    }

    if (block) yield block
    onEnd(position)
  } finally {
    stream.destroy()
  }
}

async function openTarget(target: FlashTarget, temporaryPath: string | undefined): Promise<{handle: FileHandle; buffers?: Buffer[]; directIoUnavailable?: string}> {
  if (!target.isBlockDevice) return {handle: await open(temporaryPath!, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o644)}
  const open_ = async (flags: number) => {
    try {
      return await open(target.path, flags)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EBUSY') throw new ExpectedError(`${target.path} is in use (a partition is mounted or another program has it open) — unmount it and try again`)
      if (code === 'EACCES' || code === 'EPERM') throw new ExpectedError(`no permission to write ${target.path} — run with sudo`)
      if (code === 'EROFS') throw new ExpectedError(`${target.path} is read-only (is the card's lock switch on?)`)
      throw new ExpectedError(`cannot open ${target.path}: ${(error as Error).message}`)
    }
  }

  const handle = await open_(constants.O_RDWR | constants.O_DIRECT | constants.O_EXCL)
  const buffers = allocateDirectBuffers(handle.fd, POOL_SIZE, BLOCK_SIZE)
  if (buffers) return {handle, buffers}
  await handle.close()
  return {handle: await open_(constants.O_RDWR | constants.O_EXCL), directIoUnavailable: `${target.path} refuses direct I/O`}
}

/**
 * Writes an image to a drive or a file, then reads back what was written and compares hashes. On a block device the
 * transfers bypass the page cache (O_DIRECT) and the drive is opened exclusively (O_EXCL); a regular file destination is
 * written beside its final name and renamed only once complete and verified.
 */
export async function flashImage(options: FlashOptions): Promise<FlashResult> {
  const {source, target, blockMap} = options
  if (blockMap && source.size !== undefined && blockMap.imageSize !== source.size) {
    throw new ExpectedError(`the block map is for another image: it describes ${blockMap.imageSize} bytes, the image has ${source.size}`)
  }

  const knownSize = blockMap?.imageSize ?? source.size
  if (target.isBlockDevice && target.size !== undefined && knownSize !== undefined && knownSize > target.size) {
    throw new ExpectedError(`the image (${formatBytes(knownSize)}) is larger than ${target.path} (${formatBytes(target.size)})`)
  }

  const ranges: ByteRange[] = blockMap ? blockMap.ranges : [{start: 0, end: knownSize ?? Number.POSITIVE_INFINITY}]
  const temporaryPath = target.isBlockDevice ? undefined : `${target.path}.${process.pid}.flotilla-partial`
  const {handle, buffers, directIoUnavailable} = await openTarget(target, temporaryPath)
  const place = {name: target.path, path: temporaryPath ?? target.path}
  const direct = Boolean(buffers)
  const sectorSize = target.sectorSize ?? 512
  const pool = new BufferPool(buffers ?? Array.from({length: POOL_SIZE}, () => Buffer.allocUnsafeSlow(BLOCK_SIZE)))
  const written: WrittenBlock[] = []
  let imageSize = knownSize
  let bytesWritten = 0
  let completed = false
  try {
    const total = blockMap ? blockMap.mappedBytes : knownSize
    const writeStarted = Date.now()
    const writeMeter = new ProgressMeter('write', total, () => (source.fileSize ? source.fileBytesRead() / source.fileSize : undefined), options.onProgress)
    const blocks =
      source.file
        ? rawBlocks(source, ranges, pool)
        : streamBlocks(source, ranges, pool, (size) => {
            if (blockMap && size < blockMap.imageSize) throw new ExpectedError(`${source.path} ends at ${size} bytes, before the ${blockMap.imageSize} its block map describes`)
            imageSize ??= size
          })
    const inflight = new Set<Promise<void>>()
    let failure: unknown
    for await (const block of blocks) {
      checkAborted(options.signal)
      if (failure) {
        pool.release(block.buffer)
        break
      }

      const length = direct ? roundUp(block.length, sectorSize) : block.length
      if (target.size !== undefined && block.offset + block.length > target.size) {
        pool.release(block.buffer)
        throw new ExpectedError(`the image is larger than ${target.path} (${formatBytes(target.size)}): it goes on past that`)
      }

      // Direct transfers are whole sectors: the last block of an image is padded with zeros, still inside the drive.
      block.buffer.fill(0, block.length, length)
      written.push({offset: block.offset, length: block.length, hash: xxh64(block.buffer.subarray(0, block.length))})
      const task: Promise<void> = writeFully(place, handle, block.buffer, length, block.offset, options.writeBlock ?? handleWrite)
        .then(
          () => {
            bytesWritten += block.length
            writeMeter.update(bytesWritten)
          },
          (error: unknown) => {
            failure ??= error
          },
        )
        .finally(() => {
          pool.release(block.buffer)
          inflight.delete(task)
        })
      inflight.add(task)
      if (inflight.size >= WRITE_DEPTH) await Promise.race(inflight)
    }

    await Promise.all(inflight)
    if (failure) throw failure
    if (imageSize === undefined) throw new ExpectedError(`${source.path} is empty`)
    if (!target.isBlockDevice) await handle.truncate(imageSize)
    await transferWithRetries(place, async () => {
      await handle.sync()
      return 0
    }, 'flushing the written data', bytesWritten)
    writeMeter.update(bytesWritten, true)
    const writeMs = Date.now() - writeStarted

    const verifyStarted = Date.now()
    if (options.verify) {
      checkAborted(options.signal)
      await options.beforeVerify?.()
      await verifyWritten(target, temporaryPath ?? target.path, written, pool, direct ? sectorSize : 1, bytesWritten, options)
    }

    completed = true
    return {
      imageSize,
      bytesWritten,
      sparse: Boolean(blockMap),
      verified: options.verify,
      directIo: direct,
      directIoUnavailable,
      writeMs,
      verifyMs: options.verify ? Date.now() - verifyStarted : 0,
    }
  } finally {
    await handle.close()
    if (temporaryPath) {
      if (completed) await rename(temporaryPath, target.path)
      else await rm(temporaryPath, {force: true})
    }
  }
}

async function verifyWritten(
  target: FlashTarget,
  readPath: string,
  written: WrittenBlock[],
  pool: BufferPool,
  sectorSize: number,
  total: number,
  options: FlashOptions,
): Promise<void> {
  const direct = sectorSize > 1
  const handle = await open(readPath, constants.O_RDONLY | (direct ? constants.O_DIRECT : 0))
  const meter = new ProgressMeter('verify', total, () => undefined, options.onProgress)
  let verified = 0
  let mismatch: ByteRange | undefined
  let failure: unknown
  try {
    const inflight = new Set<Promise<void>>()
    for (const block of written) {
      checkAborted(options.signal)
      if (mismatch || failure) break
      const buffer = await pool.acquire()
      const task: Promise<void> = readFully({name: target.path, path: readPath}, handle, buffer, roundUp(block.length, sectorSize), block.offset)
        .then(
          (read) => {
            if (read < block.length || xxh64(buffer.subarray(0, block.length)) !== block.hash) {
              const range = {start: block.offset, end: block.offset + block.length}
              if (!mismatch || range.start < mismatch.start) mismatch = range
            }

            verified += block.length
            meter.update(verified)
          },
          (error: unknown) => {
            failure ??= error
          },
        )
        .finally(() => {
          pool.release(buffer)
          inflight.delete(task)
        })
      inflight.add(task)
      if (inflight.size >= WRITE_DEPTH) await Promise.race(inflight)
    }

    await Promise.all(inflight)
  } finally {
    await handle.close()
  }

  if (failure) throw failure
  if (mismatch) throw new VerificationError(target.path, mismatch)
  meter.update(verified, true)
}
