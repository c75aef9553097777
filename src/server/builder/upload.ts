import {createHash} from 'node:crypto'
import {closeSync, createReadStream, createWriteStream, openSync, readFileSync, readSync} from 'node:fs'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {type Readable, Transform} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'

import {extract, type Header, pack as createTarPack, type Pack} from 'tar-stream'

import {ExpectedError} from '../../errors.js'
import {CONTENT_HASH_PATTERN, CONTENT_HASH_RECORD, CONTENT_SIZE_RECORD} from '../../protocol/build-upload.js'
import type {ProjectFiles} from '../../project/files.js'
import type {ProjectIgnore} from '../../project/ignore.js'
import {addBufferedEntry, addStreamedEntry, EventLoopPacer, readableArchive} from '../../project/pack.js'

export interface UploadLimits {
  /** Bytes of the upload as it arrives (gzip'd). */
  maxUploadBytes: number
  /** Total uncompressed bytes of file contents. */
  maxBytes: number
  maxEntries: number
}

export const DEFAULT_UPLOAD_LIMITS: UploadLimits = {maxUploadBytes: 1024 ** 3, maxBytes: 2 * 1024 ** 3, maxEntries: 200_000}

/** An upload the builder refuses: the message names the entry or the limit, and what to do. */
export class BuildContextError extends ExpectedError {}

/**
 * The upload refers to stored contents this builder does not have (a balancer sent the contents query to another
 * server instance, whose data dir holds them): the client sends them again in full (protocol/build-events.ts).
 */
export class MissingContentsError extends BuildContextError {
  readonly missing: string[]

  /** `references`: each missing hash with the first entry naming it. */
  constructor(references: Map<string, string>) {
    const [[hash, name]] = references
    const others = references.size > 1 ? ` (and ${references.size - 1} other contents)` : ''
    super(`"${name}" refers to contents (sha256 ${hash.slice(0, 12)}…) that this fleet's builder does not have${others} — push again to send them`)
    this.missing = [...references.keys()]
  }
}

/** The most missing contents listed in one refusal (far more than any project holds; a listing stays small). */
const MAX_MISSING_CONTENTS = 200_000

/** Longest entry name or link target accepted; longer ones are no project's and would only cost memory. */
const MAX_NAME_LENGTH = 4096
/** Links followed one after another while resolving a path, as Linux allows before ELOOP. */
const MAX_LINK_HOPS = 40
/** Files up to this size are read from the spool in one synchronous call (the page cache has them); larger ones stream. */
const SMALL_FILE_BYTES = 256 * 1024

interface StoredEntry {
  type: 'file' | 'directory' | 'symlink'
  mode: number
  mtime: Date
  size: number
  /** Where the file's contents start in the spool. */
  offset: number
  linkTarget?: string
  /** A file's contents' SHA-256 (hex), as the builder computed it when they arrived or stored them. */
  hash?: string
  /** Where a file's contents are when the upload referred to stored ones instead of carrying them. */
  blob?: string
}

/**
 * The file contents of a fleet's earlier uploads that an upload may refer to by hash instead of carrying them
 * (see protocol/build-upload.ts): their sizes and where they lie, by the hash the builder computed.
 */
export interface KnownContents {
  sizeOf(hash: string): number | undefined
  pathOf(hash: string): string
}

/** How much of an upload came in it and how much was referred to from earlier uploads. */
export interface UploadSummary {
  receivedFiles: number
  receivedBytes: number
  storedFiles: number
  storedBytes: number
}

/** Contents that arrived in the upload, once each: what the store keeps for later uploads. */
export interface ReceivedContents {
  hash: string
  size: number
  /** The contents in one buffer (small ones) … */
  read(): Buffer
  /** … or as a stream. */
  stream(): Readable
}

/**
 * An entry's name as a list of path parts, or an empty list for the project folder itself. Names are data here,
 * never paths the server opens, but they are still held to what a project can contain: nothing absolute, no `..`.
 */
function entryParts(name: string): string[] {
  if (name.length > MAX_NAME_LENGTH) throw new BuildContextError(`the build context holds a name longer than ${MAX_NAME_LENGTH} characters: "${name.slice(0, 80)}…"`)
  const normalised = name.replaceAll('\\', '/')
  if (normalised.startsWith('/') || /^[A-Za-z]:/.test(normalised)) throw new BuildContextError(`the build context holds an absolute path: "${name}"`)
  const parts = normalised.split('/').filter((part) => part !== '' && part !== '.')
  if (parts.includes('..')) throw new BuildContextError(`the build context holds a path with "..": "${name}"`)
  if (parts.some((part) => part.includes('\0'))) throw new BuildContextError(`the build context holds a name with a NUL character: "${name}"`)
  return parts
}

function entryType(header: Header): StoredEntry['type'] {
  switch (header.type) {
    case 'file':
    case 'contiguous-file':
      return 'file'
    case 'directory':
      return 'directory'
    case 'symlink':
      return 'symlink'
    case 'link':
      throw new BuildContextError(`the build context holds a hard link, which is not supported: "${header.name}" — replace it with a copy or a symbolic link`)
    default:
      throw new BuildContextError(`the build context holds "${header.name}", a ${header.type ?? 'special file'}: only files, folders and links can be built from — add it to .dockerignore`)
  }
}

/** Counts the bytes of the upload as they arrive and stops it past the limit. */
function uploadMeter(maxBytes: number): Transform {
  let seen = 0
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length
      if (seen > maxBytes) callback(new BuildContextError(`the upload is larger than ${formatMiB(maxBytes)} — make the project smaller (.dockerignore) or raise the server's --max-upload`))
      else callback(null, chunk)
    },
  })
}

function formatMiB(bytes: number): string {
  return `${Math.round((bytes / 1024 / 1024) * 10) / 10} MiB`
}

/**
 * A project uploaded to the builder, held as an index of its entries beside one spool file of their contents.
 * Nothing is unpacked: names and links are data, so no entry can make the server read or write outside the
 * spool, whatever links the archive holds. A file may instead refer to contents of the fleet's earlier uploads by
 * the hash the builder computed for them (KnownContents); every file's hash is the builder's own. The services'
 * build contexts are made from it as tar streams.
 */
export class UploadedProject implements ProjectFiles {
  readonly label = 'the uploaded project'
  private readonly entries = new Map<string, StoredEntry>()
  /** Folders named only as the parents of other entries. */
  private readonly impliedFolders = new Set<string>()
  /** The spool, open for reading once the upload is in. */
  private descriptor?: number
  readonly summary: UploadSummary = {receivedFiles: 0, receivedBytes: 0, storedFiles: 0, storedBytes: 0}

  private constructor(
    private readonly spoolFolder: string,
    private readonly spoolFile: string,
  ) {}

  /**
   * Reads a gzip'd tar as it streams in, refusing what a project cannot hold and anything over the limits. The
   * spool is a new folder in `spoolParent`, removed by dispose() or when the upload is refused.
   */
  static async receive(gzipped: Readable, limits: UploadLimits = DEFAULT_UPLOAD_LIMITS, spoolParent = tmpdir(), known?: KnownContents): Promise<UploadedProject> {
    const spoolFolder = await mkdtemp(path.join(spoolParent, 'flotilla-upload-'))
    const project = new UploadedProject(spoolFolder, path.join(spoolFolder, 'contents'))
    try {
      await project.fill(gzipped, limits, known)
      project.checkLinks()
      return project
    } catch (error) {
      await project.dispose()
      throw explainArchiveError(error)
    }
  }

  private async fill(gzipped: Readable, limits: UploadLimits, known?: KnownContents): Promise<void> {
    const spool = createWriteStream(this.spoolFile, {mode: 0o600})
    const unpack = extract()
    let bytes = 0
    let spooled = 0
    // References to contents this builder lacks are all gathered, so that the client can send them at once.
    const missing = new Map<string, string>()
    const consume = (async () => {
      for await (const entry of unpack) {
        const {header} = entry
        if (this.entries.size >= limits.maxEntries) throw new BuildContextError(`the build context has more than ${limits.maxEntries} entries — leave some out with .dockerignore`)
        const parts = entryParts(header.name)
        const type = entryType(header)
        const reference = type === 'file' ? storedReference(header, known, missing) : undefined
        const size = type === 'file' ? (reference?.size ?? header.size ?? 0) : 0
        bytes += size
        if (bytes > limits.maxBytes) throw new BuildContextError(`the build context is larger than ${formatMiB(limits.maxBytes)} unpacked — leave some out with .dockerignore`)
        const stored: StoredEntry = {type, mode: (header.mode ?? (type === 'directory' ? 0o755 : 0o644)) & 0o7777, mtime: header.mtime ?? new Date(0), size, offset: spooled, ...reference}
        if (type === 'symlink') stored.linkTarget = checkedLinkTarget(header)
        if (parts.length > 0) this.add(parts, stored, header.name)
        const hasher = type === 'file' && !reference ? createHash('sha256') : undefined
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          if (!hasher) continue
          hasher.update(chunk)
          spooled += chunk.length
          if (!spool.write(chunk)) await new Promise<void>((resolve) => spool.once('drain', () => resolve()))
        }

        if (hasher) stored.hash = verifiedHash(header, hasher.digest('hex'))
        this.count(stored)
      }
    })()
    // The request is piped, not made part of the pipeline: a refused upload must not destroy it, or the socket
    // would go with it before the client reads why. What is left of it is drained and dropped instead.
    const meter = uploadMeter(limits.maxUploadBytes)
    gzipped.once('error', (error) => meter.destroy(error))
    gzipped.once('close', () => gzipped.readableEnded || meter.destroy(new BuildContextError('the upload was cut off before it ended')))
    gzipped.pipe(meter)
    try {
      await Promise.all([pipeline(meter, createGunzip(), unpack), consume])
      if (missing.size > 0) throw new MissingContentsError(missing)
    } catch (error) {
      gzipped.unpipe(meter)
      gzipped.resume()
      throw error
    } finally {
      unpack.destroy()
      await new Promise<void>((resolve, reject) => spool.end((error?: Error | null) => (error ? reject(error) : resolve())))
    }

    this.descriptor = openSync(this.spoolFile, 'r')
  }

  private count(entry: StoredEntry): void {
    if (entry.type !== 'file') return
    if (entry.blob) {
      this.summary.storedFiles++
      this.summary.storedBytes += entry.size
    } else {
      this.summary.receivedFiles++
      this.summary.receivedBytes += entry.size
    }
  }

  /** Adds an entry, refusing anything placed under a link or a file, and a name given twice. */
  private add(parts: string[], entry: StoredEntry, rawName: string): void {
    for (let depth = 1; depth < parts.length; depth++) {
      const parent = parts.slice(0, depth).join('/')
      const existing = this.entries.get(parent)
      if (existing?.type === 'symlink') throw new BuildContextError(`the build context holds "${rawName}" under the link "${parent}": entries may not be placed through links`)
      if (existing?.type === 'file') throw new BuildContextError(`the build context holds "${rawName}" under the file "${parent}"`)
      this.impliedFolders.add(parent)
    }

    const name = parts.join('/')
    const existing = this.entries.get(name)
    if (existing && !(existing.type === 'directory' && entry.type === 'directory')) throw new BuildContextError(`the build context holds "${name}" twice`)
    if (entry.type !== 'directory' && this.impliedFolders.has(name)) throw new BuildContextError(`the build context holds "${name}" both as a folder and as a ${entry.type === 'file' ? 'file' : 'link'}`)
    this.entries.set(name, entry)
  }

  /** Every link must lead to a place inside the project, followed as the engine would follow it. */
  private checkLinks(): void {
    for (const [name, entry] of this.entries) {
      if (entry.type !== 'symlink') continue
      const parent = name.split('/').slice(0, -1)
      if (this.walk(parent, (entry.linkTarget ?? '').split('/'), true, name) === undefined) {
        throw new BuildContextError(`the build context holds a link that escapes it: "${name}" → "${entry.linkTarget}"`)
      }
    }
  }

  /**
   * Resolves `path` from the folder `start`, following the project's links, as a kernel would on disk: the parts
   * of the place it leads to, or undefined when it leaves the project. The last part's link is followed when asked.
   */
  private walk(start: string[], path: string[], followLast: boolean, what: string): string[] | undefined {
    const resolved = [...start]
    const pending = [...path]
    let hops = 0
    while (pending.length > 0) {
      const part = pending.shift() as string
      if (part === '' || part === '.') continue
      if (part === '..') {
        if (resolved.length === 0) return undefined
        resolved.pop()
        continue
      }

      resolved.push(part)
      const entry = this.entries.get(resolved.join('/'))
      if (entry?.type !== 'symlink' || (pending.length === 0 && !followLast)) continue
      if (++hops > MAX_LINK_HOPS) throw new BuildContextError(`the build context holds links that go round in a loop: "${what}"`)
      resolved.pop()
      pending.unshift(...(entry.linkTarget ?? '').split('/'))
    }

    return resolved
  }

  /** The entry a project path leads to (links followed), with its name; undefined when nothing is there. */
  private lookup(relativePath: string): {name: string; entry?: StoredEntry} | undefined {
    let parts: string[]
    try {
      parts = entryParts(relativePath)
    } catch {
      return undefined
    }

    const resolved = this.walk([], parts, true, relativePath)
    if (resolved === undefined) return undefined
    const name = resolved.join('/')
    return {name, entry: this.entries.get(name)}
  }

  async kind(relativePath: string): Promise<'file' | 'directory' | undefined> {
    const found = this.lookup(relativePath)
    if (found === undefined) return undefined
    if (found.name === '' || found.entry?.type === 'directory' || this.impliedFolders.has(found.name)) return 'directory'
    return found.entry?.type === 'file' ? 'file' : undefined
  }

  async readText(relativePath: string): Promise<string | undefined> {
    const entry = this.lookup(relativePath)?.entry
    return entry?.type === 'file' ? this.readContents(entry).toString('utf8') : undefined
  }

  describe(relativePath: string): string {
    return `${relativePath} in ${this.label}`
  }

  private readContents(entry: StoredEntry): Buffer {
    if (entry.blob) {
      const contents = readFileSync(entry.blob)
      if (contents.length !== entry.size) throw new Error(`the stored contents ${entry.hash} changed size`)
      return contents
    }

    const buffer = Buffer.allocUnsafe(entry.size)
    if (entry.size === 0) return buffer
    if (this.descriptor === undefined) throw new Error('the uploaded project was disposed of')
    let done = 0
    while (done < entry.size) {
      const read = readSync(this.descriptor, buffer, done, entry.size - done, entry.offset + done)
      if (read === 0) throw new Error('the upload spool ended early')
      done += read
    }

    return buffer
  }

  /**
   * The uncompressed tar of one service's build context (a folder of the project, links followed), as the
   * engine's build API takes it: the context's own `.dockerignore` applied, and `extraFiles` (a resolved
   * template) added in place of any entry of the same name.
   */
  contextTar(context: string, ignore: ProjectIgnore, extraFiles: Record<string, string> = {}): Readable {
    const found = this.lookup(context)
    const tar = createTarPack()
    this.fillContext(tar, found?.name ?? '', ignore, extraFiles).catch((error: unknown) => tar.destroy(error as Error))
    return readableArchive(tar)
  }

  /** The entries of one folder's build context, by their names inside it, without the ignored ones and those `extraFiles` replace. */
  private *contextEntries(folder: string, ignore: ProjectIgnore, extraFiles: Record<string, string>): Generator<[string, StoredEntry]> {
    const prefix = folder === '' ? '' : `${folder}/`
    for (const [name, entry] of this.entries) {
      if (!name.startsWith(prefix)) continue
      const relative = name.slice(prefix.length)
      if (!Object.hasOwn(extraFiles, relative) && !ignore.ignores(relative)) yield [relative, entry]
    }
  }

  private async fillContext(tar: Pack, folder: string, ignore: ProjectIgnore, extraFiles: Record<string, string>): Promise<void> {
    const pacer = new EventLoopPacer()
    for (const [relative, entry] of this.contextEntries(folder, ignore, extraFiles)) {
      const header = {name: entry.type === 'directory' ? `${relative}/` : relative, type: entry.type, mode: entry.mode, mtime: entry.mtime, uid: 0, gid: 0}
      if (entry.type === 'symlink') await addBufferedEntry(tar, {...header, linkname: entry.linkTarget})
      else if (entry.type === 'directory' || entry.size <= SMALL_FILE_BYTES) await addBufferedEntry(tar, {...header, size: entry.size}, entry.type === 'file' ? this.readContents(entry) : undefined)
      else await addStreamedEntry(tar, {...header, size: entry.size}, this.streamContents(entry))
      await pacer.tick()
    }

    for (const [name, text] of Object.entries(extraFiles)) await addBufferedEntry(tar, {name, type: 'file', mode: 0o644, mtime: new Date(), uid: 0, gid: 0}, Buffer.from(text))
    tar.finalize()
  }

  private streamContents(entry: StoredEntry): Readable {
    if (entry.blob) return createReadStream(entry.blob)
    return createReadStream(this.spoolFile, {start: entry.offset, end: entry.offset + entry.size - 1})
  }

  /**
   * What one service's build context holds, as one SHA-256: every entry's name, type, permissions, size and
   * contents' hash (or link target), and the `extraFiles`. Modification times are left out: a fresh checkout of
   * the same files is the same context. Two uploads with the same digest give the engine the same build.
   */
  contextDigest(context: string, ignore: ProjectIgnore, extraFiles: Record<string, string> = {}): string {
    const folder = this.lookup(context)?.name ?? ''
    const lines: string[] = []
    for (const [relative, entry] of this.contextEntries(folder, ignore, extraFiles)) {
      lines.push(`${entry.type}\0${relative}\0${entry.mode.toString(8)}\0${entry.size}\0${entry.type === 'symlink' ? entry.linkTarget : (entry.hash ?? '')}`)
    }

    for (const [name, text] of Object.entries(extraFiles)) lines.push(`extra\0${name}\0${createHash('sha256').update(text).digest('hex')}`)
    lines.sort()
    return createHash('sha256').update(lines.join('\n')).digest('hex')
  }

  /** The hashes of every file's contents, received or referred to. */
  contentHashes(): Set<string> {
    const hashes = new Set<string>()
    for (const entry of this.entries.values()) if (entry.hash) hashes.add(entry.hash)
    return hashes
  }

  /** The contents that arrived in this upload, once each, leaving out the files `skip` names. */
  receivedContents(skip: (name: string) => boolean): ReceivedContents[] {
    const seen = new Set<string>()
    const contents: ReceivedContents[] = []
    for (const [name, entry] of this.entries) {
      if (entry.type !== 'file' || entry.blob || !entry.hash || seen.has(entry.hash) || skip(name)) continue
      seen.add(entry.hash)
      contents.push({hash: entry.hash, size: entry.size, read: () => this.readContents(entry), stream: () => this.streamContents(entry)})
    }

    return contents
  }

  /** Removes the spool; the project cannot be read afterwards. */
  async dispose(): Promise<void> {
    if (this.descriptor !== undefined) closeSync(this.descriptor)
    this.descriptor = undefined
    await rm(this.spoolFolder, {recursive: true, force: true})
  }
}

/**
 * The stored contents a file entry refers to instead of carrying them (PAX records, protocol/build-upload.ts), or
 * undefined for an entry that carries its own. Only contents the fleet's store holds, of the size it holds, pass.
 */
function storedReference(header: Header, known: KnownContents | undefined, missing: Map<string, string>): {hash: string; blob: string; size: number} | undefined {
  const pax = (header.pax ?? {}) as Record<string, string>
  const sizeRecord = pax[CONTENT_SIZE_RECORD]
  if (sizeRecord === undefined) return undefined
  const hash = pax[CONTENT_HASH_RECORD]
  if (hash === undefined || !CONTENT_HASH_PATTERN.test(hash) || !/^\d{1,15}$/.test(sizeRecord)) {
    throw new BuildContextError(`"${header.name}" refers to stored contents without a valid ${CONTENT_HASH_RECORD} (64 lower-case hex digits) and ${CONTENT_SIZE_RECORD}`)
  }

  if ((header.size ?? 0) !== 0) throw new BuildContextError(`"${header.name}" both refers to stored contents and carries contents of its own`)
  const size = Number(sizeRecord)
  const storedSize = known?.sizeOf(hash)
  if (storedSize === undefined || known === undefined) {
    if (missing.size >= MAX_MISSING_CONTENTS) throw new BuildContextError(`"${header.name}" refers to contents (sha256 ${hash.slice(0, 12)}…) that this fleet's builder does not have — push again to send them`)
    if (!missing.has(hash)) missing.set(hash, header.name)
    return {hash, blob: '', size}
  }

  if (storedSize !== size) throw new BuildContextError(`"${header.name}" refers to stored contents of ${size} bytes, but they have ${storedSize}`)
  return {hash, blob: known.pathOf(hash), size}
}

/** The hash the builder computed, refused when the upload labelled the contents with another one. */
function verifiedHash(header: Header, computed: string): string {
  const claimed = (header.pax as Record<string, string> | undefined)?.[CONTENT_HASH_RECORD]
  if (claimed !== undefined && claimed !== computed) {
    throw new BuildContextError(`the upload labels the contents of "${header.name}" with sha256 ${claimed.slice(0, 64)}, but they hash to ${computed}: refusing mislabelled contents`)
  }

  return computed
}

/** A link's target as the archive gives it, refused when it is absolute: a project's links point inside it. */
function checkedLinkTarget(header: Header): string {
  const target = header.linkname ?? ''
  if (target.length > MAX_NAME_LENGTH) throw new BuildContextError(`the build context holds a link with a target longer than ${MAX_NAME_LENGTH} characters: "${header.name}"`)
  if (target === '' || target.startsWith('/') || /^[A-Za-z]:/.test(target)) throw new BuildContextError(`the build context holds a link that escapes it: "${header.name}" → "${target}"`)
  return target
}

/** The refusal as it stands, or a broken archive said in one line. */
function explainArchiveError(error: unknown): unknown {
  if (error instanceof ExpectedError) return error
  const code = (error as NodeJS.ErrnoException).code
  const message = (error as Error).message
  if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR' || /header|tar|unexpected end/i.test(message)) {
    return new BuildContextError(`the build context is not a valid gzip'd tar archive: ${message}`)
  }

  return error
}
