import {closeSync, createReadStream, type Dirent, lstatSync, openSync, readdirSync, readlinkSync, readSync} from 'node:fs'
import path from 'node:path'
import {pipeline, Readable} from 'node:stream'
import {setImmediate as setImmediatePromise} from 'node:timers/promises'
import {createGzip, constants as zlibConstants} from 'node:zlib'

import {type Header, pack as createTarPack, type Pack} from 'tar-stream'

import {ExpectedError} from '../errors.js'
import {CONTENT_HASH_RECORD, CONTENT_SIZE_RECORD} from '../protocol/build-upload.js'
import {isInsideGitFolder, type ProjectIgnore, readProjectIgnore} from './ignore.js'

/** One thing the archive will hold, as found on disk. */
export interface ProjectEntry {
  /** POSIX, relative to the project folder; what the tar entry is named. */
  name: string
  absolutePath: string
  type: 'file' | 'directory' | 'symlink'
  /** Permission bits, including setuid/setgid/sticky. */
  mode: number
  mtime: Date
  /** Bytes of a file; 0 for the rest. */
  size: number
  /** Where a symlink points, as written in the link. */
  linkTarget?: string
  /** The inode's change time (ms) and number: with size and mtime, what tells a file unchanged since it was last hashed. */
  changeTimeMs?: number
  inode?: number
}

export interface PackProgress {
  bytesRead: number
  totalBytes: number
}

export interface PackOptions {
  /** The ignore rules; read from the folder's `.dockerignore` (and those of `contexts`) when not given. */
  ignore?: ProjectIgnore
  /** The services' build contexts (POSIX, relative to the folder): one with its own `.dockerignore` follows it for its files. */
  contexts?: string[]
  /** Files to send with other contents than on disk (mode and mtime kept), by entry name: the resolved compose file. */
  replacements?: Record<string, string>
  /** Files to add (or put in place of an entry of the same name), by entry name: registry secrets from elsewhere. */
  extraFiles?: Record<string, string>
  /** The entries, when the caller listed them already (listProjectEntries with the same rules). */
  entries?: ProjectEntry[]
  /**
   * Files whose contents the builder already has, by entry name, with their SHA-256: sent as references to them
   * (PAX records of protocol/build-upload.ts) instead of their contents.
   */
  references?: Map<string, string>
  /** Called as file contents are read, with the total known from the listing. */
  onProgress?: (progress: PackProgress) => void
}

export interface GzipPackOptions extends PackOptions {
  /** zlib level, 1 (fastest) to 9 (smallest); the default is gzip's own default, as `tar -cz` uses. */
  gzipLevel?: number
}

/**
 * Files up to this size are read in one call; larger ones are streamed. Listing and small reads use the
 * synchronous fs calls: every asynchronous call is a round trip through libuv's thread pool, which made a
 * 20,000-file project pack five times slower than `tar`. To keep spinners and uploads moving, the event loop
 * gets a turn after every `SYNC_CALLS_BETWEEN_TURNS` of those calls.
 */
const SMALL_FILE_BYTES = 256 * 1024
const SYNC_CALLS_BETWEEN_TURNS = 500
const LARGE_FILE_CHUNK_BYTES = 1024 * 1024
/** tar-stream emits a 512-byte header, the data and its padding separately; zlib does far better on fewer, larger writes. */
const OUTPUT_CHUNK_BYTES = 256 * 1024

/** Counts synchronous calls and lets the event loop run once enough of them have kept it waiting. */
export class EventLoopPacer {
  private callsSinceTurn = 0

  async tick(): Promise<void> {
    if (++this.callsSinceTurn < SYNC_CALLS_BETWEEN_TURNS) return
    this.callsSinceTurn = 0
    await setImmediatePromise()
  }
}

function compareNames(left: string, right: string): number {
  return left < right ? -1 : left > right ? 1 : 0
}

function describeEntry(absolutePath: string, name: string, type: ProjectEntry['type']): ProjectEntry {
  const stats = lstatSync(absolutePath)
  return {
    name,
    absolutePath,
    type,
    mode: stats.mode & 0o7777,
    mtime: stats.mtime,
    size: type === 'file' ? stats.size : 0,
    changeTimeMs: stats.ctimeMs,
    inode: stats.ino,
    ...(type === 'symlink' ? {linkTarget: readlinkSync(absolutePath)} : {}),
  }
}

/**
 * Walks one folder into `entries`: sorted by name, each directory followed by its contents. An ignored folder is
 * still walked (`.dockerignore` may re-include something inside it, and balena always sends Dockerfiles),
 * except `.git`, which nothing can bring back.
 */
async function walkFolder(folder: string, relativeFolder: string, ignore: ProjectIgnore, entries: ProjectEntry[], pacer: EventLoopPacer): Promise<void> {
  const absoluteFolder = path.join(folder, relativeFolder)
  let children: Dirent[]
  try {
    children = readdirSync(absoluteFolder, {withFileTypes: true})
  } catch (error) {
    throw explainReadError(error, absoluteFolder)
  }

  children.sort((left, right) => compareNames(left.name, right.name))
  for (const child of children) {
    const name = relativeFolder === '' ? child.name : `${relativeFolder}/${child.name}`
    const absolutePath = path.join(folder, name)
    if (child.isDirectory()) {
      if (isInsideGitFolder(name)) continue
      if (!ignore.ignores(name)) entries.push(describeEntry(absolutePath, name, 'directory'))
      await walkFolder(folder, name, ignore, entries, pacer)
      continue
    }

    const type = child.isFile() ? 'file' : child.isSymbolicLink() ? 'symlink' : undefined
    if (type !== undefined && !ignore.ignores(name)) {
      entries.push(describeEntry(absolutePath, name, type))
      await pacer.tick()
    }
  }
}

/** What the archive of a project folder holds, in archive order: sorted, depth first, `.dockerignore` applied. Sockets, pipes and devices are left out. */
export async function listProjectEntries(folder: string, ignore?: ProjectIgnore, contexts?: string[]): Promise<ProjectEntry[]> {
  const rules = ignore ?? (await readProjectIgnore(folder, contexts))
  const entries: ProjectEntry[] = []
  await walkFolder(path.resolve(folder), '', rules, entries, new EventLoopPacer())
  return entries
}

function changedWhilePacking(entry: ProjectEntry, cause?: unknown): ExpectedError {
  return new ExpectedError(`${entry.absolutePath} changed while it was being packed — try again once nothing writes to the project`, {cause})
}

/** Turns what the file system says into a line a person can act on; anything unexpected stays as it is. */
function explainReadError(error: unknown, file: string, entry?: ProjectEntry): unknown {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'EACCES' || code === 'EPERM') return new ExpectedError(`cannot read ${file}: permission denied — make it readable or add it to .dockerignore`, {cause: error})
  if (code === 'ENOENT' && entry) return changedWhilePacking(entry, error)
  return error
}

export function readSmallFile(entry: ProjectEntry): Buffer {
  const buffer = Buffer.allocUnsafe(entry.size)
  let descriptor: number
  try {
    descriptor = openSync(entry.absolutePath, 'r')
  } catch (error) {
    throw explainReadError(error, entry.absolutePath, entry)
  }

  try {
    let offset = 0
    while (offset < entry.size) {
      const bytesRead = readSync(descriptor, buffer, offset, entry.size - offset, offset)
      if (bytesRead === 0) throw changedWhilePacking(entry)
      offset += bytesRead
    }
  } finally {
    closeSync(descriptor)
  }

  return buffer
}

type EntryHeader = Partial<Header> & Pick<Header, 'name'>
type EntrySink = ReturnType<Pack['entry']>

function headerOf(entry: ProjectEntry): EntryHeader {
  const {mode, mtime} = entry
  if (entry.type === 'directory') return {name: `${entry.name}/`, type: 'directory', mode, mtime, uid: 0, gid: 0}
  if (entry.type === 'symlink') return {name: entry.name, type: 'symlink', linkname: entry.linkTarget, mode, mtime, uid: 0, gid: 0}
  return {name: entry.name, type: 'file', size: entry.size, mode, mtime, uid: 0, gid: 0}
}

export function addBufferedEntry(tar: Pack, header: EntryHeader, content?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    tar.entry(header, content ?? Buffer.alloc(0), (error) => (error ? reject(error) : resolve()))
  })
}

/** Resolves when the entry wants more data; rejects when the archive was torn down meanwhile (the upload was aborted). */
function drained(sink: EntrySink): Promise<void> {
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      sink.off('close', onClose)
      resolve()
    }

    const onClose = () => {
      sink.off('drain', onDrain)
      reject(new Error('the archive was closed before it was complete'))
    }

    sink.once('drain', onDrain)
    sink.once('close', onClose)
  })
}

interface StreamedEntryOptions {
  onChunk?: (bytes: number) => void
  /** The error for a source that ends before `header.size` bytes. */
  shortError?: () => Error
  /** Turns a read error into one a person can act on. */
  explain?: (error: unknown) => unknown
}

/** Adds a file whose contents stream from `source`, which must yield exactly `header.size` bytes. */
export async function addStreamedEntry(tar: Pack, header: EntryHeader, source: Readable, options: StreamedEntryOptions = {}): Promise<void> {
  let sink!: EntrySink
  const entryDone = new Promise<void>((resolve, reject) => {
    sink = tar.entry(header, (error) => (error ? reject(error) : resolve()))
  })
  entryDone.catch(() => {})
  try {
    let written = 0
    for await (const chunk of source as AsyncIterable<Buffer>) {
      written += chunk.length
      options.onChunk?.(chunk.length)
      if (!sink.write(chunk)) await drained(sink)
    }

    if (written !== header.size) throw options.shortError?.() ?? new Error(`${header.name} gave ${written} bytes instead of ${header.size}`)
  } catch (error) {
    source.destroy()
    const explained = options.explain?.(error) ?? error
    sink.destroy(explained as Error)
    throw explained
  }

  sink.end(null)
  await entryDone
}

function addStreamedFile(tar: Pack, entry: ProjectEntry, onChunk: (bytes: number) => void): Promise<void> {
  const source = createReadStream(entry.absolutePath, {start: 0, end: entry.size - 1, highWaterMark: LARGE_FILE_CHUNK_BYTES})
  return addStreamedEntry(tar, headerOf(entry), source, {
    onChunk,
    shortError: () => changedWhilePacking(entry),
    explain: (error) => explainReadError(error, entry.absolutePath, entry),
  })
}

/** Keeps `OUTPUT_CHUNK_BYTES` or more together; a chunk that is already that large passes through uncopied. */
async function* coalesce(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let pending: Buffer[] = []
  let pendingBytes = 0
  for await (const chunk of source) {
    if (pendingBytes === 0 && chunk.length >= OUTPUT_CHUNK_BYTES) {
      yield chunk
      continue
    }

    pending.push(chunk)
    pendingBytes += chunk.length
    if (pendingBytes >= OUTPUT_CHUNK_BYTES) {
      yield Buffer.concat(pending, pendingBytes)
      pending = []
      pendingBytes = 0
    }
  }

  if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes)
}

/** A file the builder has, as an entry without contents that names them by hash and size. */
function referenceHeader(entry: ProjectEntry, hash: string): EntryHeader {
  return {...headerOf(entry), size: 0, pax: {[CONTENT_HASH_RECORD]: hash, [CONTENT_SIZE_RECORD]: String(entry.size)}}
}

async function fillArchive(tar: Pack, folder: string, options: PackOptions): Promise<void> {
  const replacements = new Map(Object.entries(options.replacements ?? {}).map(([name, text]) => [name, Buffer.from(text)]))
  const extraFiles = Object.entries(options.extraFiles ?? {})
  const listed = options.entries ?? (await listProjectEntries(folder, options.ignore, options.contexts))
  const entries = listed
    .filter((entry) => !Object.hasOwn(options.extraFiles ?? {}, entry.name))
    .map((entry) => {
      const replacement = entry.type === 'file' ? replacements.get(entry.name) : undefined
      return replacement === undefined ? entry : {...entry, size: replacement.length}
    })
  const references = options.references ?? new Map<string, string>()
  const totalBytes = entries.reduce((sum, entry) => sum + (references.has(entry.name) ? 0 : entry.size), 0)
  let bytesRead = 0
  const countBytes = (bytes: number) => {
    bytesRead += bytes
    options.onProgress?.({bytesRead, totalBytes})
  }

  options.onProgress?.({bytesRead, totalBytes})
  const pacer = new EventLoopPacer()
  for (const entry of entries) {
    const replacement = entry.type === 'file' ? replacements.get(entry.name) : undefined
    const reference = entry.type === 'file' ? references.get(entry.name) : undefined
    if (reference !== undefined) {
      await addBufferedEntry(tar, referenceHeader(entry, reference))
      await pacer.tick()
    } else if (replacement === undefined && entry.type === 'file' && entry.size > SMALL_FILE_BYTES) {
      await addStreamedFile(tar, entry, countBytes)
    } else {
      const content = replacement ?? (entry.type === 'file' && entry.size > 0 ? readSmallFile(entry) : undefined)
      await addBufferedEntry(tar, headerOf(entry), content)
      if (content) {
        countBytes(content.length)
        await pacer.tick()
      }
    }
  }

  for (const [name, text] of extraFiles) await addBufferedEntry(tar, {name, type: 'file', mode: 0o600, mtime: new Date(), uid: 0, gid: 0}, Buffer.from(text))
  tar.finalize()
}

/**
 * The uncompressed tar of a project folder as the builder receives it: `.dockerignore` applied with balena's
 * rules, entries sorted, POSIX names, modes and mtimes kept, owner root, symlinks as symlinks, and file contents
 * streamed from disk. Templates and Dockerfile variants are sent as they are: the builder resolves them for the
 * fleet's device type, as balena's does.
 */
export function packProjectTar(folder: string, options: PackOptions = {}): Readable {
  const tar = createTarPack()
  fillArchive(tar, folder, options).catch((error: unknown) => tar.destroy(error as Error))
  return readableArchive(tar)
}

/** A tar being written, as a byte stream in chunks large enough for zlib and the network. */
export function readableArchive(tar: Pack): Readable {
  return Readable.from(coalesce(tar as AsyncIterable<unknown> as AsyncIterable<Buffer>), {objectMode: false, highWaterMark: OUTPUT_CHUNK_BYTES})
}

/** The gzip'd tar of a project folder, compressed as it is read: the body of `POST /v3/build`. */
export function packProject(folder: string, options: GzipPackOptions = {}): Readable {
  const gzip = createGzip({level: options.gzipLevel ?? zlibConstants.Z_DEFAULT_COMPRESSION, chunkSize: OUTPUT_CHUNK_BYTES})
  // pipeline, not pipe: when the upload stops early, destroying the gzip stream must stop the reading too.
  pipeline(packProjectTar(folder, options), gzip, () => {})
  return gzip
}
