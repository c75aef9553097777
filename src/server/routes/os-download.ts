import {createReadStream} from 'node:fs'
import {stat} from 'node:fs/promises'
import path from 'node:path'

import type {FastifyInstance, FastifyReply} from 'fastify'

import {actorOf, type ServerContext} from '../context.js'
import {badRequest, HttpError, notFound} from '../http-errors.js'
import {convertedImageStream, type ImageConversion, type ImageFile, OsImageCatalogue, type OsImageVersion} from '../os-images.js'

const READ_CHUNK = 1024 * 1024
const RESCAN_INTERVAL_MS = 10_000
const FILE_TYPES = new Set<string>(['.img', '.gz', '.zip', '.xz', '.bz2', '.bmap'])
/** A bmap is XML of a few kilobytes per gigabyte of image; anything larger is not one. */
const BMAP_MAX_BYTES = 16 * 1024 * 1024

export type ByteRange = {start: number; end: number}

/**
 * The one range of a `Range` header over a file of `size` bytes: undefined to send the whole file (no header,
 * a malformed one, or several ranges — all allowed by RFC 9110), `unsatisfiable` when it starts past the end.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (!match || (match[1] === '' && match[2] === '')) return undefined
  if (match[1] === '') {
    const suffix = Number(match[2])
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return {start: Math.max(0, size - suffix), end: size - 1}
  }

  const start = Number(match[1])
  const end = match[2] === '' ? Number.POSITIVE_INFINITY : Number(match[2])
  if (end < start) return undefined
  if (start >= size) return 'unsatisfiable'
  return {start, end: Math.min(end, size - 1)}
}

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined
}

/** The stored file for the asked type, or a stored form it can be made from on the fly (no ranges). */
function chooseFile(files: ImageFile[], fileType: string | undefined): {file: ImageFile; convert?: ImageConversion} | undefined {
  if (!fileType) return {file: files[0]}
  const stored = files.find((file) => file.fileType === fileType)
  if (stored) return {file: stored}
  const raw = files.find((file) => file.fileType === '.img')
  if (fileType === '.gz' && raw) return {file: raw, convert: 'gzip'}
  const gzipped = files.find((file) => file.fileType === '.gz')
  if (fileType === '.img' && gzipped) return {file: gzipped, convert: 'gunzip'}
  return undefined
}

/** The block map of a version, whole (it is small): with its length and [flotilla] `Digest`, like the image. */
async function sendBlockMap(reply: FastifyReply, catalogue: OsImageCatalogue, deviceType: string, found: OsImageVersion): Promise<FastifyReply> {
  const info = found.bmap ? await stat(found.bmap).catch(() => undefined) : undefined
  if (!found.bmap || !info?.isFile()) throw notFound(`no block map (.bmap) for ${deviceType} ${found.version}`)
  if (info.size > BMAP_MAX_BYTES) throw notFound(`the block map of ${deviceType} ${found.version} is too large to be one`)
  const file = {path: found.bmap, size: info.size, mtimeMs: info.mtimeMs}
  reply.header('content-type', 'application/xml')
  reply.header('content-disposition', `attachment; filename="${path.basename(found.bmap).replaceAll('"', '')}"`)
  reply.header('accept-ranges', 'none')
  reply.header('last-modified', info.mtime.toUTCString())
  reply.header('digest', `sha-256=${await catalogue.digestOf(file)}`)
  reply.header('content-length', info.size)
  return reply.send(info.size === 0 ? '' : createReadStream(found.bmap))
}

/**
 * `GET /download?deviceType=&version=&fileType=&developmentMode=` (optional Bearer): the OS image of a published
 * version (`latest` for the newest) with its length, byte ranges (`206`/`416`) and [flotilla] `Digest: sha-256=`;
 * a form made on the fly (`.gz` of a raw image, raw of a `.gz`) has its length and Digest too, but no ranges.
 * balenaOS images are unified, so `developmentMode` changes nothing here: config.json decides.
 * [flotilla] `fileType=.bmap` answers the version's block map (bmaptool's XML, for the raw image; 404 when the
 * folder has none), so that a downloaded image is flashed sparsely.
 */
export function registerOsDownloadRoute(app: FastifyInstance, context: ServerContext, imagesDir: string | undefined): void {
  const catalogue = imagesDir ? new OsImageCatalogue(imagesDir, context.db, (message) => app.log.warn(message)) : undefined
  if (catalogue) {
    // Published before the server answers, then kept in step with the folder.
    app.addHook('onReady', async () => {
      await catalogue.refresh()
      catalogue.watch(RESCAN_INTERVAL_MS, (error) => app.log.warn({err: error}, `rescanning the images dir ${catalogue.dir} failed`))
    })
    app.addHook('onClose', async () => catalogue.unwatch())
  }

  app.get('/download', async (request, reply) => {
    await actorOf(context, request) // a bad credential is refused; guests may download public images
    const query = (request.query ?? {}) as Record<string, unknown>
    const deviceType = text(query.deviceType)
    if (!deviceType) throw badRequest('deviceType is required')
    const version = text(query.version) ?? 'latest'
    const fileType = text(query.fileType)
    if (fileType !== undefined && !FILE_TYPES.has(fileType)) throw badRequest(`fileType must be one of ${[...FILE_TYPES].join(', ')}`)
    if (!catalogue) throw notFound(`this server publishes no OS images (start it with --images-dir)`)

    const versions = await catalogue.versionsOf(deviceType)
    if (versions.length === 0) throw notFound(`no OS images for device type "${deviceType}"`)
    const found = await catalogue.find(deviceType, version)
    if (!found) throw notFound(`no OS version "${version}" for device type "${deviceType}" (available: ${versions.map((candidate) => candidate.version).join(', ')})`)
    if (fileType === '.bmap') return sendBlockMap(reply, catalogue, deviceType, found)
    const choice = chooseFile(found.files, fileType)
    if (!choice) throw notFound(`no ${fileType} image of ${deviceType} ${found.version} (available: ${found.files.map((file) => file.fileType).join(', ')})`)

    const info = await stat(choice.file.path).catch(() => undefined)
    if (!info?.isFile()) throw notFound(`the image of ${deviceType} ${found.version} is gone from the server`)
    const file: ImageFile = {...choice.file, size: info.size, mtimeMs: info.mtimeMs}
    const etag = `"${file.size.toString(16)}-${Math.trunc(file.mtimeMs).toString(16)}"`
    const ifRange = text(request.headers['if-range'])
    const range = choice.convert || (ifRange && ifRange !== etag) ? undefined : parseRange(text(request.headers.range), file.size)
    if (range === 'unsatisfiable') throw new HttpError(416, `the image has ${file.size} bytes: ${request.headers.range} is past its end`, {'content-range': `bytes */${file.size}`})
    const name = choice.convert ? `${deviceType}-${found.version}.img${choice.convert === 'gzip' ? '.gz' : ''}` : path.basename(file.path)
    reply.header('content-type', 'application/octet-stream')
    reply.header('content-disposition', `attachment; filename="${name.replaceAll('"', '')}"`)
    if (choice.convert) {
      // Made on the fly, so no ranges; but with the length and Digest of what is made, measured once.
      const converted = await catalogue.conversionOf(file, choice.convert)
      reply.header('accept-ranges', 'none')
      reply.header('digest', `sha-256=${converted.digest}`)
      reply.header('content-length', converted.size)
      return reply.send(converted.size === 0 ? '' : convertedImageStream(file.path, choice.convert))
    }

    reply.header('accept-ranges', 'bytes')
    reply.header('etag', etag)
    reply.header('last-modified', info.mtime.toUTCString())
    reply.header('digest', `sha-256=${await catalogue.digestOf(file)}`)
    if (range) {
      reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${file.size}`).header('content-length', range.end - range.start + 1)
      return reply.send(createReadStream(file.path, {start: range.start, end: range.end, highWaterMark: READ_CHUNK}))
    }

    reply.header('content-length', file.size)
    return reply.send(file.size === 0 ? '' : createReadStream(file.path, {highWaterMark: READ_CHUNK}))
  })
}
