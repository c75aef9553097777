import {createHash} from 'node:crypto'
import {createReadStream, createWriteStream} from 'node:fs'
import {rename, rm, stat, writeFile} from 'node:fs/promises'
import type {IncomingHttpHeaders} from 'node:http'
import {Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {Worker} from 'node:worker_threads'

import got, {type Request} from 'got'

import {ExpectedError, InterruptedError, NotFoundError, UsageError} from '../errors.js'
import {parseBlockMap} from '../image/bmap.js'
import {latestOf, parseOsVersion, sortOsVersionsNewestFirst} from '../protocol/os-version.js'
import type {FleetClient} from './client.js'
import {odataValue} from './pine.js'

/** One published OS version of a device type, as `os versions --json` prints it. */
export interface OsVersionRelease {
  id: number
  raw_version: string
  variant: string | null
  phase: string | null
}

interface HostAppRow {
  id: number
  owns__release: OsVersionRelease[]
}

/** Download progress, shaped like the flasher's so the same view draws it. */
export interface DownloadProgress {
  phase: 'download'
  /** Bytes of the image on disk so far, a resumed part included. */
  bytes: number
  total?: number
  fraction?: number
  bytesPerSecond: number
}

export interface DownloadOptions {
  deviceType: string
  /** A raw_version, a version without its `+revN`, or `latest` (the default). */
  version?: string
  output: string
  signal?: AbortSignal
  onProgress?: (progress: DownloadProgress) => void
  /** Called when a dropped connection is picked up again with a Range request. */
  onRetry?: (error: Error, bytes: number) => void
  /** Tries after a dropped connection within one run (a part left on disk is resumed on the next run anyway). */
  retries?: number
  /** Told when the server offered a block map that could not be used (the image is saved without one). */
  onWarning?: (message: string) => void
}

export interface DownloadResult {
  file: string
  device_type: string
  version: string
  size: number
  /** Bytes that were already on disk from an earlier, interrupted download. */
  resumed_from: number
  /** Connections dropped and picked up again during this run. */
  retries: number
  /** sha-256 of the file, hex. */
  sha256: string
  /** Whether the server published a checksum and the file matches it. */
  verified: boolean
  /** The block map saved beside the image (where `os flash` finds it), or null when the server has none. */
  bmap: string | null
}

const PROGRESS_INTERVAL_MS = 200
const WRITE_CHUNK = 1024 * 1024
const RETRIED_ERRORS = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNREFUSED', 'ERR_STREAM_PREMATURE_CLOSE'])
/** A bmap is a few kilobytes of XML per gigabyte of image: a larger answer is not one (a server that ignored fileType). */
const BMAP_MAX_BYTES = 16 * 1024 * 1024

/**
 * The versions of a device type's OS, newest first, asked as balena-cli asks: the hostApp fleets of the type
 * and their final, successful, valid releases. Works without a login where the server allows guests.
 */
export async function listOsVersions(client: FleetClient, deviceType: string): Promise<OsVersionRelease[]> {
  const anonymous = !client.hasToken
  const hostApps = await client.pine.get<HostAppRow>(
    'application',
    {
      $select: 'id',
      $filter: `is_host eq true and is_for__device_type/any(dt:dt/slug in (${odataValue(deviceType)}))`,
      $expand: `owns__release($select=id,raw_version,variant,phase;$filter=is_final eq true and is_invalidated eq false and status eq 'success')`,
    },
    {anonymous},
  )
  const releases = hostApps.flatMap((hostApp) => hostApp.owns__release).filter((release) => release.raw_version)
  if (releases.length === 0) {
    const types = await client.pine.get('device_type', {$select: 'id', $filter: `slug eq ${odataValue(deviceType)}`}, {anonymous})
    if (types.length === 0) throw new UsageError(`invalid device type "${deviceType}" — run "flotilla device-type list" to see the valid ones`)
    throw new ExpectedError(`no OS versions are published for device type "${deviceType}"`)
  }

  return sortOsVersionsNewestFirst(releases, (release) => release.raw_version)
}

/** The version to download: exact raw_version, the newest revision of a version given without one, or the newest. */
export function selectOsVersion(versions: OsVersionRelease[], wanted: string | undefined, deviceType: string): OsVersionRelease {
  const text = (wanted ?? 'latest').trim()
  if (text === 'latest' || text === 'recommended' || text === 'default') return latestOf(versions, (release) => release.raw_version) ?? versions[0]
  const bare = text.replace(/^v(?=\d)/, '')
  const exact = versions.find((release) => release.raw_version === text || release.raw_version === bare)
  if (exact) return exact
  const parsed = parseOsVersion(bare)
  if (parsed && parsed.build.length === 0) {
    const revision = versions.find((release) => release.raw_version.replace(/^v/, '').split('+')[0] === bare)
    if (revision) return revision
  }

  throw new NotFoundError(`OS version`, text, `run "flotilla os versions ${deviceType}" to see the published ones`)
}

/** The sha-256 of a `Digest` (RFC 3230) or `Repr-Digest` (RFC 9530) header, as base64; undefined when none. */
export function sha256FromHeaders(headers: IncomingHttpHeaders): string | undefined {
  for (const name of ['digest', 'repr-digest']) {
    const value = headers[name]
    if (typeof value !== 'string') continue
    for (const part of value.split(',')) {
      const match = /^\s*sha-256\s*=\s*:?([\w+/=]+):?\s*$/i.exec(part)
      if (match) return match[1]
    }
  }

  return undefined
}

/** The start and total size of `Content-Range: bytes a-b/total` (or an unsatisfied range's `bytes *\/total`). */
export function totalFromContentRange(header: string | undefined): {start?: number; total?: number} {
  const match = /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(header ?? '')
  if (!match) return {}
  return {start: match[1] === undefined ? undefined : Number(match[1]), total: match[2] === '*' ? undefined : Number(match[2])}
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0
    throw error
  }
}

const HASHER_SOURCE = `
const {parentPort} = require('node:worker_threads')
const {createHash} = require('node:crypto')
let hash = createHash('sha256')
parentPort.on('message', (message) => {
  if (message === 'digest') {
    parentPort.postMessage({digest: hash.digest()})
    hash = createHash('sha256')
  } else {
    hash.update(message)
    parentPort.postMessage({done: message.length})
  }
})`
/** Bytes handed to the hashing thread and not hashed yet, beyond which the download waits for it. */
const HASH_BACKLOG = 64 * 1024 * 1024

/**
 * sha-256 on a thread of its own, so hashing overlaps receiving and writing (on machines without SHA
 * instructions it is slower than the network). Chunks are copied to the thread, with a bounded backlog.
 */
class ThreadHasher {
  private readonly worker = new Worker(HASHER_SOURCE, {eval: true})
  private backlog = 0
  private waiting: Array<() => void> = []
  private digestWaiter?: (digest: Buffer) => void
  private failure?: Error

  constructor() {
    this.worker.unref()
    this.worker.on('message', (message: {done?: number; digest?: Uint8Array}) => {
      if (message.digest) {
        this.digestWaiter?.(Buffer.from(message.digest))
        return
      }

      this.backlog -= message.done ?? 0
      if (this.backlog <= HASH_BACKLOG) for (const resolve of this.waiting.splice(0)) resolve()
    })
    this.worker.on('error', (error) => {
      this.failure = error
      for (const resolve of this.waiting.splice(0)) resolve()
    })
  }

  /** Queues a chunk; resolves at once unless the backlog is full. */
  async update(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure
    this.backlog += chunk.length
    this.worker.postMessage(chunk)
    if (this.backlog > HASH_BACKLOG) await new Promise<void>((resolve) => this.waiting.push(resolve))
  }

  /** The digest of everything updated since the last digest, and a fresh start. */
  async digest(): Promise<Buffer> {
    if (this.failure) throw this.failure
    const digest = new Promise<Buffer>((resolve) => (this.digestWaiter = resolve))
    this.worker.postMessage('digest')
    return digest
  }

  async close(): Promise<void> {
    await this.worker.terminate()
  }
}

async function hashFile(hasher: ThreadHasher, file: string, length: number): Promise<void> {
  if (length === 0) return
  for await (const chunk of createReadStream(file, {start: 0, end: length - 1, highWaterMark: 4 * WRITE_CHUNK})) await hasher.update(chunk as Buffer)
}

interface OpenedDownload {
  stream: Request
  status: number
  headers: IncomingHttpHeaders
}

/** The form of the image to ask for, from the name the user wants: `.gz`, `.zip`, or the raw `.img`. */
export function fileTypeFor(output: string): '.img' | '.gz' | '.zip' {
  const lower = output.toLowerCase()
  if (lower.endsWith('.gz')) return '.gz'
  if (lower.endsWith('.zip')) return '.zip'
  return '.img'
}

/** Where the block map of a downloaded image is saved: the first name `os flash` (and bmaptool) look for. */
export function blockMapPathFor(output: string): string {
  return `${output}.bmap`
}

/**
 * The block map the server publishes for a version ([flotilla] `fileType=.bmap`), checked: its `Digest` when sent,
 * that it parses, and that it describes an image of `imageSize` bytes when that is known. Undefined when the server
 * has none (any 4xx, as balenaCloud answers an unknown file type); `warn` says why an offered one was not used.
 */
export async function fetchBlockMap(
  client: FleetClient,
  options: {deviceType: string; version: string; imageSize?: number; signal?: AbortSignal; warn?: (message: string) => void},
): Promise<Buffer | undefined> {
  const skip = (reason: string) => {
    options.warn?.(`the block map of ${options.deviceType} ${options.version} was not saved: ${reason} — os flash will work out the blocks to write itself`)
    return undefined
  }

  let opened: OpenedDownload
  try {
    opened = await new Promise<OpenedDownload>((resolve, reject) => {
      const stream = got.stream(`${client.apiUrl}/download`, {
        searchParams: {deviceType: options.deviceType, version: options.version, fileType: '.bmap'},
        headers: {'x-balena-client': 'flotilla', ...client.authHeaders()},
        throwHttpErrors: false,
        retry: {limit: 0},
        timeout: {connect: 10_000, response: 60_000},
        signal: options.signal,
      })
      stream.once('error', reject)
      stream.once('response', (response: {statusCode: number; headers: IncomingHttpHeaders}) => resolve({stream, status: response.statusCode, headers: response.headers}))
    })
  } catch (error) {
    if (options.signal?.aborted) throw new InterruptedError('download interrupted — run the command again')
    return skip((error as Error).message)
  }

  const {stream, status, headers} = opened
  // A server without bmaps refuses the file type, or (ignoring it) starts sending the image: neither is a bmap.
  if ((status >= 400 && status < 500) || Number(headers['content-length'] ?? 0) > BMAP_MAX_BYTES) {
    stream.destroy()
    return undefined
  }

  if (status >= 300) {
    stream.destroy()
    return skip(`the server answered ${status}`)
  }

  const chunks: Buffer[] = []
  let length = 0
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer)
      length += (chunk as Buffer).length
      if (length > BMAP_MAX_BYTES) {
        stream.destroy()
        return undefined
      }
    }
  } catch (error) {
    if (options.signal?.aborted) throw new InterruptedError('download interrupted — run the command again')
    return skip((error as Error).message)
  }

  const body = Buffer.concat(chunks)
  const digest = sha256FromHeaders(headers)
  if (digest && createHash('sha256').update(body).digest('base64') !== digest) return skip('it does not match the checksum the server published')
  let imageSize
  try {
    ;({imageSize} = parseBlockMap(body.toString('utf8'), 'the answer'))
  } catch (error) {
    return skip((error as Error).message)
  }

  if (options.imageSize !== undefined && imageSize !== options.imageSize) return skip(`it describes ${imageSize} bytes, the image has ${options.imageSize}`)
  return body
}

function openDownload(client: FleetClient, options: {deviceType: string; version: string; output: string; from: number; signal?: AbortSignal}): Promise<OpenedDownload> {
  const stream = got.stream(`${client.apiUrl}/download`, {
    searchParams: {deviceType: options.deviceType, version: options.version, fileType: fileTypeFor(options.output)},
    headers: {'x-balena-client': 'flotilla', ...client.authHeaders(), ...(options.from > 0 ? {range: `bytes=${options.from}-`} : {})},
    decompress: false,
    throwHttpErrors: false,
    retry: {limit: 0},
    timeout: {connect: 10_000, response: 60_000},
    signal: options.signal,
  })
  return new Promise((resolve, reject) => {
    stream.once('error', (error) => reject(error))
    stream.once('response', (response: {statusCode: number; headers: IncomingHttpHeaders}) => {
      resolve({stream, status: response.statusCode, headers: response.headers})
    })
  })
}

async function readBody(stream: Request): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

function isRetried(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code ?? ''
  return RETRIED_ERRORS.has(code) || (error as Error).name === 'ReadError'
}

/**
 * Downloads an OS image to `output` through `<output>.part`: an existing part is resumed with a Range request,
 * a dropped connection is picked up again a few times, the whole file is checked against the sha-256 the server
 * publishes (`Digest`), and only a complete, matching file takes the final name. A mismatch deletes the part.
 */
export async function downloadOsImage(client: FleetClient, options: DownloadOptions): Promise<DownloadResult> {
  const hasher = new ThreadHasher()
  try {
    return await download(client, options, hasher)
  } finally {
    await hasher.close()
  }
}

async function download(client: FleetClient, options: DownloadOptions, hasher: ThreadHasher): Promise<DownloadResult> {
  const versions = await listOsVersions(client, options.deviceType)
  const {raw_version: version} = selectOsVersion(versions, options.version, options.deviceType)
  const part = `${options.output}.part`
  const partSize = await sizeOf(part)
  /** Bytes of the earlier run's part that this download keeps (none when the server makes it start over). */
  let resumedFrom = partSize
  const started = Date.now()
  let lastProgress = 0
  let retries = 0
  await hashFile(hasher, part, partSize)
  let onDisk = partSize
  let expectedDigest: string | undefined
  let total: number | undefined

  const progress = (final = false) => {
    const time = Date.now()
    if (!options.onProgress || (!final && time - lastProgress < PROGRESS_INTERVAL_MS)) return
    lastProgress = time
    const seconds = Math.max((time - started) / 1000, 0.001)
    options.onProgress({phase: 'download', bytes: onDisk, total, fraction: total ? onDisk / total : undefined, bytesPerSecond: Math.round((onDisk - resumedFrom) / seconds)})
  }

  for (;;) {
    let opened: OpenedDownload
    try {
      opened = await openDownload(client, {deviceType: options.deviceType, version, output: options.output, from: onDisk, signal: options.signal})
    } catch (error) {
      if (options.signal?.aborted) throw new InterruptedError(`download interrupted — run the command again to resume from ${part}`)
      throw client.translateError(error)
    }

    const {stream, status, headers} = opened
    if (status === 416 && onDisk > 0) {
      // The part is as long as the image or longer: it cannot be resumed, so start again.
      stream.destroy()
      await rm(part, {force: true})
      await hasher.digest()
      onDisk = 0
      resumedFrom = 0
      continue
    }

    if (status >= 400) throw client.errorForStatus(status, await readBody(stream), headers['retry-after'])
    const digest = sha256FromHeaders(headers)
    if (expectedDigest && digest && digest !== expectedDigest) {
      stream.destroy()
      await rm(part, {force: true})
      throw new ExpectedError(`the image of ${options.deviceType} ${version} changed on the server during the download — run the command again`)
    }

    expectedDigest ??= digest
    const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length'])
    if (status === 206) {
      const range = totalFromContentRange(headers['content-range'] as string | undefined)
      if (range.start !== onDisk) {
        stream.destroy()
        throw new ExpectedError(`the server answered a resume from byte ${onDisk} with ${String(headers['content-range'])} — delete ${part} and try again`)
      }

      total = range.total
    } else {
      // A whole file: the server ignored the range (or there was none), so the part starts over.
      if (onDisk > 0) {
        await hasher.digest()
        onDisk = 0
        resumedFrom = 0
      }

      total = length
    }

    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        onDisk += chunk.length
        progress()
        hasher.update(chunk).then(() => callback(null, chunk), callback)
      },
    })
    try {
      await pipeline(stream, counter, createWriteStream(part, {flags: onDisk > 0 ? 'a' : 'w', highWaterMark: WRITE_CHUNK}))
    } catch (error) {
      if (options.signal?.aborted) throw new InterruptedError(`download interrupted at ${onDisk} bytes — run the command again to resume from ${part}`)
      // The hash has seen exactly what reached the part, so the next request continues from its end.
      onDisk = await sizeOf(part)
      await hasher.digest()
      await hashFile(hasher, part, onDisk)
      if (isRetried(error) && retries < (options.retries ?? 3)) {
        retries++
        options.onRetry?.(error as Error, onDisk)
        continue
      }

      throw new ExpectedError(`download failed after ${onDisk} bytes (${(error as Error).message}) — run the command again to resume from ${part}`, {cause: error})
    }

    if (total !== undefined && onDisk < total) {
      if (retries < (options.retries ?? 3)) {
        retries++
        options.onRetry?.(new Error('the connection closed early'), onDisk)
        continue
      }

      throw new ExpectedError(`download stopped at ${onDisk} of ${total} bytes — run the command again to resume from ${part}`)
    }

    break
  }

  progress(true)
  const sha256 = await hasher.digest()
  if (expectedDigest && sha256.toString('base64') !== expectedDigest) {
    await rm(part, {force: true})
    throw new ExpectedError(
      `the downloaded image does not match the checksum the server published (sha-256 ${Buffer.from(expectedDigest, 'base64').toString('hex')}, got ${sha256.toString('hex')}) — the partial file was deleted; run the command again`,
    )
  }

  // The bmap follows the image it was fetched with: one left from an earlier download must not describe a new image.
  const blockMap = await fetchBlockMap(client, {
    deviceType: options.deviceType,
    version,
    imageSize: fileTypeFor(options.output) === '.img' ? onDisk : undefined,
    signal: options.signal,
    warn: options.onWarning,
  })
  const blockMapPath = blockMapPathFor(options.output)
  await rm(blockMapPath, {force: true})
  await rename(part, options.output)
  if (blockMap) {
    await writeFile(`${blockMapPath}.part`, blockMap)
    await rename(`${blockMapPath}.part`, blockMapPath)
  }

  return {
    file: options.output,
    device_type: options.deviceType,
    version,
    size: onDisk,
    resumed_from: resumedFrom,
    retries,
    sha256: sha256.toString('hex'),
    verified: expectedDigest !== undefined,
    bmap: blockMap ? blockMapPath : null,
  }
}
