import {createWriteStream} from 'node:fs'
import {mkdir, symlink, utimes} from 'node:fs/promises'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'

import {extract, type Header} from 'tar-stream'

import {ExpectedError} from '../../errors.js'

export interface ContextLimits {
  /** Total uncompressed bytes of file contents. */
  maxBytes: number
  maxEntries: number
}

export const DEFAULT_CONTEXT_LIMITS: ContextLimits = {maxBytes: 2 * 1024 ** 3, maxEntries: 200_000}

/** A build context the server refuses: the message says which entry and why. */
export class UnsafeContextError extends ExpectedError {}

/** Where an entry may be written: inside the context, never an absolute path or one climbing out with `..`. */
export function safeEntryPath(root: string, name: string): string {
  const normalised = name.replaceAll('\\', '/')
  if (normalised.startsWith('/') || /^[A-Za-z]:/.test(normalised)) throw new UnsafeContextError(`the build context holds an absolute path: "${name}"`)
  if (normalised.split('/').includes('..')) throw new UnsafeContextError(`the build context holds a path with "..": "${name}"`)
  const target = path.resolve(root, normalised)
  if (target !== root && !target.startsWith(root + path.sep)) throw new UnsafeContextError(`the build context holds a path outside it: "${name}"`)
  return target
}

/** A link may point anywhere inside the context, and nowhere else. */
function checkLinkTarget(root: string, entryPath: string, header: Header): void {
  const linkname = header.linkname ?? ''
  const target = path.resolve(path.dirname(entryPath), linkname)
  if (path.isAbsolute(linkname) || (target !== root && !target.startsWith(root + path.sep))) {
    throw new UnsafeContextError(`the build context holds a link that escapes it: "${header.name}" → "${linkname}"`)
  }
}

/**
 * Unpacks the gzip'd tar of a project into `root` as it streams in, refusing absolute paths, `..`, links out of
 * the context, and anything over the limits. Regular files, directories and links only.
 */
export async function extractBuildContext(gzipped: Readable, root: string, limits: ContextLimits = DEFAULT_CONTEXT_LIMITS): Promise<{bytes: number; entries: number}> {
  const resolvedRoot = path.resolve(root)
  await mkdir(resolvedRoot, {recursive: true})
  const unpack = extract()
  let bytes = 0
  let entries = 0
  const directoryTimes: Array<[string, Date]> = []

  const consume = (async () => {
    for await (const entry of unpack) {
      const header = entry.header
      entries++
      if (entries > limits.maxEntries) throw new UnsafeContextError(`the build context has more than ${limits.maxEntries} entries`)
      const target = safeEntryPath(resolvedRoot, header.name)
      if (header.type === 'directory') {
        await mkdir(target, {recursive: true, mode: (header.mode ?? 0o755) | 0o700})
        if (header.mtime) directoryTimes.push([target, header.mtime])
        entry.resume()
      } else if (header.type === 'file' || header.type === 'contiguous-file') {
        bytes += header.size ?? 0
        if (bytes > limits.maxBytes) throw new UnsafeContextError(`the build context is larger than ${limits.maxBytes} bytes`)
        await mkdir(path.dirname(target), {recursive: true})
        await pipeline(entry, createWriteStream(target, {mode: header.mode ?? 0o644}))
        if (header.mtime) await utimes(target, header.mtime, header.mtime)
      } else if (header.type === 'symlink') {
        checkLinkTarget(resolvedRoot, target, header)
        await mkdir(path.dirname(target), {recursive: true})
        await symlink(header.linkname ?? '', target)
        entry.resume()
      } else if (header.type === 'link') {
        throw new UnsafeContextError(`the build context holds a hard link, which is not supported: "${header.name}"`)
      } else {
        entry.resume()
      }
    }
  })()

  try {
    await Promise.all([pipeline(gzipped, createGunzip(), unpack), consume])
  } catch (error) {
    unpack.destroy()
    gzipped.destroy()
    if (error instanceof ExpectedError) throw error
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR' || /header|tar/i.test((error as Error).message)) {
      throw new UnsafeContextError(`the build context is not a valid gzip'd tar archive: ${(error as Error).message}`)
    }

    throw error
  }

  for (const [directory, time] of directoryTimes.reverse()) await utimes(directory, time, time)
  return {bytes, entries}
}
