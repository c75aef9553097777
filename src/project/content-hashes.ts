import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdir, readFile, rename, writeFile} from 'node:fs/promises'
import path from 'node:path'

import {EventLoopPacer, type ProjectEntry, readSmallFile} from './pack.js'

/** Files up to this size are hashed from one synchronous read; larger ones stream. */
const SMALL_FILE_BYTES = 256 * 1024
/**
 * A file changed this recently may change again within the same timestamp tick without its times showing it (git's
 * "racy" files): its hash is not remembered.
 */
const RACY_MS = 2000

/** What a remembered hash is good for: the file as lstat saw it (size, mtime, ctime, inode), then its SHA-256. */
type CachedHash = [size: number, mtimeMs: number, changeTimeMs: number, inode: number, hash: string]

function fingerprintOf(entry: ProjectEntry): string | undefined {
  if (entry.changeTimeMs === undefined || entry.inode === undefined) return undefined
  return `${entry.size}:${entry.mtime.getTime()}:${entry.changeTimeMs}:${entry.inode}`
}

async function readCache(file: string | undefined): Promise<Map<string, CachedHash>> {
  if (!file) return new Map()
  try {
    return new Map(Object.entries(JSON.parse(await readFile(file, 'utf8')) as Record<string, CachedHash>))
  } catch {
    return new Map()
  }
}

/** Writes the cache whole under a temporary name first, so a push that stops halfway leaves the old one. */
async function writeCache(file: string, cache: Record<string, CachedHash>): Promise<void> {
  await mkdir(path.dirname(file), {recursive: true})
  const temporary = `${file}.${process.pid}.tmp`
  await writeFile(temporary, JSON.stringify(cache), {mode: 0o600})
  await rename(temporary, file)
}

async function hashFile(entry: ProjectEntry, replacements: Record<string, string>): Promise<string> {
  const hash = createHash('sha256')
  if (Object.hasOwn(replacements, entry.name)) hash.update(replacements[entry.name])
  else if (entry.size <= SMALL_FILE_BYTES) hash.update(readSmallFile(entry))
  else for await (const chunk of createReadStream(entry.absolutePath)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/**
 * The SHA-256 (hex) of each file's contents, by entry name, as the archive will carry them (`replacements` instead
 * of what is on disk): what a re-push asks the builder about, so it sends only the contents the builder lacks.
 * With a `cacheFile`, a file whose size, mtime, ctime and inode are as when it was last hashed is not read again
 * (ctime cannot be set back by hand, so a rewritten file is always read).
 */
export async function hashProjectContents(entries: ProjectEntry[], replacements: Record<string, string> = {}, cacheFile?: string): Promise<Map<string, string>> {
  const started = Date.now()
  const cache = await readCache(cacheFile)
  const kept: Record<string, CachedHash> = {}
  const hashes = new Map<string, string>()
  const pacer = new EventLoopPacer()
  for (const entry of entries) {
    if (entry.type !== 'file') continue
    const fingerprint = Object.hasOwn(replacements, entry.name) ? undefined : fingerprintOf(entry)
    const cached = cache.get(entry.absolutePath)
    const hash = fingerprint !== undefined && cached && cached.slice(0, 4).join(':') === fingerprint ? cached[4] : await hashFile(entry, replacements)
    hashes.set(entry.name, hash)
    if (fingerprint !== undefined && started - (entry.changeTimeMs as number) > RACY_MS) {
      kept[entry.absolutePath] = [entry.size, entry.mtime.getTime(), entry.changeTimeMs as number, entry.inode as number, hash]
    }

    await pacer.tick()
  }

  if (cacheFile) await writeCache(cacheFile, kept)
  return hashes
}
