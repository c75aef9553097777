import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'

import {EventLoopPacer, type ProjectEntry, readSmallFile} from './pack.js'

/** Files up to this size are hashed from one synchronous read; larger ones stream. */
const SMALL_FILE_BYTES = 256 * 1024

/**
 * The SHA-256 (hex) of each file's contents, by entry name, as the archive will carry them (`replacements` instead
 * of what is on disk): what a re-push asks the builder about, so it sends only the contents the builder lacks.
 */
export async function hashProjectContents(entries: ProjectEntry[], replacements: Record<string, string> = {}): Promise<Map<string, string>> {
  const hashes = new Map<string, string>()
  const pacer = new EventLoopPacer()
  for (const entry of entries) {
    if (entry.type !== 'file') continue
    const hash = createHash('sha256')
    if (Object.hasOwn(replacements, entry.name)) hash.update(replacements[entry.name])
    else if (entry.size <= SMALL_FILE_BYTES) hash.update(readSmallFile(entry))
    else for await (const chunk of createReadStream(entry.absolutePath)) hash.update(chunk as Buffer)
    hashes.set(entry.name, hash.digest('hex'))
    await pacer.tick()
  }

  return hashes
}
