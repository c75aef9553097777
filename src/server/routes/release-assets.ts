import {timingSafeEqual} from 'node:crypto'
import {readdir, readFile, rm} from 'node:fs/promises'
import path from 'node:path'
import type {Readable} from 'node:stream'

import type {FastifyInstance, FastifyRequest} from 'fastify'

import {randomAlphanumerics} from '../auth/passwords.js'
import {authenticatedActor, type ServerContext} from '../context.js'
import {assetsWithoutContent, deleteReleaseAsset, importReleaseAssetContent, releaseAssetContentOf, releaseAssetFileOf, setReleaseAssetFile} from '../db/release-assets.js'
import {badRequest, HttpError, notFound, unauthorized} from '../http-errors.js'
import {checkODataLimits} from '../odata/limits.js'
import {RESOURCES} from '../odata/model.js'
import {parseODataUrl} from '../odata/parse.js'
import {ODataReader} from '../odata/translate.js'
import {ODataWriter} from '../odata/write.js'

/**
 * The largest file one upload takes: balena-sdk sends files up to 5 MiB in one multipart form and larger ones in
 * chunks (beginUpload/commitUpload), which this server does not offer.
 */
export const MAX_RELEASE_ASSET_BYTES = 5 * 1024 * 1024

/** Room for the form's other fields and boundaries around the file. */
const FORM_OVERHEAD_BYTES = 64 * 1024

const tooLarge = () => new HttpError(413, `a release asset holds at most ${MAX_RELEASE_ASSET_BYTES} bytes (5 MiB); larger files are not supported by this server`)

/**
 * What clients read of an uploaded file, as balena's WebResource. Its `href` carries a download token: balena-sdk
 * fetches the href without credentials (on balenaCloud it is a signed S3 URL), so the token is what lets it in.
 */
interface StoredAsset {
  href: string
  filename: string
  content_type: string
  size: number
}

async function formOf(payload: Readable, contentType: string): Promise<FormData> {
  const chunks: Buffer[] = []
  let length = 0
  for await (const chunk of payload) {
    length += (chunk as Buffer).length
    if (length > MAX_RELEASE_ASSET_BYTES + FORM_OVERHEAD_BYTES) throw tooLarge()
    chunks.push(chunk as Buffer)
  }

  try {
    return await new Response(Buffer.concat(chunks), {headers: {'content-type': contentType}}).formData()
  } catch {
    throw badRequest('the upload is not a valid multipart/form-data body')
  }
}

/** The file's own name, without any folders a client put in it; it is only ever shown, never a path on the server. */
function baseNameOf(name: string): string {
  return (name.split(/[/\\]/).pop() ?? '').slice(0, 255) || 'asset'
}

/**
 * Moves the files an older server kept in its data dir (`<data dir>/release-assets/<id>`) into the database, once:
 * each is removed when stored, and files of rows deleted since are removed too.
 */
async function importAssetFiles(context: ServerContext, directory: string): Promise<void> {
  const names = await readdir(directory).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return []
    throw error
  })
  if (names.length === 0) return
  const waiting = new Set((await assetsWithoutContent(context.db)).map(String))
  for (const name of names) {
    const file = path.join(directory, name)
    if (waiting.has(name)) await importReleaseAssetContent(context.db, Number(name), await readFile(file))
    await rm(file, {force: true})
  }

  await rm(directory, {recursive: true, force: true})
}

/** The query parameter of an asset's href that holds its download token. */
const DOWNLOAD_TOKEN = 'token'

/** Whether `token` is the download token of the stored asset's href; compared in constant time. */
function holdsDownloadToken(asset: StoredAsset, token: string): boolean {
  const expected = Buffer.from(new URL(asset.href).searchParams.get(DOWNLOAD_TOKEN) ?? '')
  const given = Buffer.from(token)
  return expected.length > 0 && expected.length === given.length && timingSafeEqual(expected, given)
}

/**
 * The stored file a download asks for: with the token of its href (whoever holds the href, as balena-sdk sends it,
 * without credentials), else for a caller who may read the asset's release. Anything else is not found.
 */
async function assetToDownload(context: ServerContext, request: FastifyRequest<{Params: {id: string}; Querystring: {token?: unknown}}>): Promise<{id: number; asset: StoredAsset}> {
  const id = /^\d{1,15}$/.test(request.params.id) ? Number(request.params.id) : 0
  if (id <= 0) throw notFound('no such release asset')
  const {token} = request.query
  if (token === undefined) {
    const actor = await authenticatedActor(context, request)
    const row = await new ODataReader(context.db, actor, 'read').readById(RESOURCES.release_asset, id)
    if (row?.asset) return {id, asset: row.asset as StoredAsset}
  } else {
    const stored = await releaseAssetFileOf(context.db, id)
    const asset = stored ? (JSON.parse(stored) as StoredAsset) : undefined
    if (asset && typeof token === 'string' && holdsDownloadToken(asset, token)) return {id, asset}
  }

  throw notFound('no such release asset')
}

const isMultipart = (request: FastifyRequest) => (request.headers['content-type'] ?? '').startsWith('multipart/form-data')

/** The form's `asset` file, within the size limit. */
async function assetFileOf(request: FastifyRequest): Promise<{form: FormData; file: File}> {
  const form = await formOf(request.body as Readable, request.headers['content-type'] ?? '')
  const file = form.get('asset')
  if (!(file instanceof File)) throw badRequest('the form needs an "asset" file field')
  if (file.size > MAX_RELEASE_ASSET_BYTES) throw tooLarge()
  return {form, file}
}

/** Stores the file of a release asset row, in the database, and records what clients read of it. */
async function storeAssetFile(context: ServerContext, id: number, file: File): Promise<void> {
  // A new token with each file: an href handed out for an older file stops working.
  const href = `${context.publicUrl}/release-asset/${id}?${DOWNLOAD_TOKEN}=${randomAlphanumerics(32)}`
  const asset: StoredAsset = {href, filename: baseNameOf(file.name), content_type: file.type || 'application/octet-stream', size: file.size}
  await setReleaseAssetFile(context.db, id, asset, new Uint8Array(await file.arrayBuffer()))
}

/**
 * balena-sdk's `release.asset.upload` with overwrite: a multipart PATCH of `/v7/release_asset(<key>)` carrying
 * a new `asset` file (and optionally a new `asset_key`). One row, which the caller may manage.
 */
async function replaceAssetFile(context: ServerContext, request: FastifyRequest): Promise<void> {
  const actor = await authenticatedActor(context, request)
  const parsed = parseODataUrl(request.url.slice('/v7'.length), '/v7')
  checkODataLimits(parsed)
  if (!parsed.key) throw badRequest('a release asset file replaces one asset: name it by key, release_asset(<id>)')
  const [id, ...others] = await new ODataReader(context.db, actor).matchingIds(parsed)
  if (id === undefined || others.length > 0) throw unauthorized()
  const {form, file} = await assetFileOf(request)
  const key = form.get('asset_key')
  if (typeof key === 'string') await new ODataWriter(context.db, actor).update(parsed, {asset_key: key})
  await storeAssetFile(context, id, file)
}

/**
 * balena's release assets (`balena release-asset upload|list|download|delete`): `POST /v7/release_asset` takes
 * JSON (an asset-less row) or a multipart form with `release`, `asset_key` and an `asset` file; the file is stored
 * in the database with its row (so every instance sharing the database serves it, and it goes with the row), and
 * served to those who may read the row at the `href` its `asset` names. Reading, listing and deleting rows is
 * pine's. `legacyDirectory`: where servers before kept the files, moved into the database at start.
 */
export function registerReleaseAssetRoutes(app: FastifyInstance, context: ServerContext, legacyDirectory: string | undefined): void {
  if (legacyDirectory) app.addHook('onReady', async () => importAssetFiles(context, legacyDirectory))
  // A multipart body reaches its route as a stream; only these two routes read one, any other refuses it.
  app.addContentTypeParser('multipart/form-data', (_request, payload, done) => done(null, payload))
  // Every request passes here: those without a multipart body (every device poll) go on without a promise made.
  app.addHook('preHandler', (request, reply, done) => {
    if (!isMultipart(request) || !request.url.startsWith('/v7/')) return done()
    if (request.method === 'POST' && request.routeOptions.url === '/v7/release_asset') return done()
    if (request.method !== 'PATCH' || !request.url.startsWith('/v7/release_asset(')) {
      return done(new HttpError(415, 'multipart/form-data is taken only by release asset uploads: POST /v7/release_asset or PATCH /v7/release_asset(<id>); send JSON'))
    }

    replaceAssetFile(context, request).then(() => reply.code(200).send(''), done)
  })

  app.post('/v7/release_asset', async (request, reply) => {
    const actor = await authenticatedActor(context, request)
    const writer = new ODataWriter(context.db, actor, context.registry)
    if (!isMultipart(request)) return reply.code(201).send(await writer.create(RESOURCES.release_asset, request.body))
    const {form, file} = await assetFileOf(request)
    const created = await writer.create(RESOURCES.release_asset, {release: Number(form.get('release')), asset_key: form.get('asset_key'), asset: null})
    const id = created.id as number
    try {
      await storeAssetFile(context, id, file)
    } catch (error) {
      await deleteReleaseAsset(context.db, id)
      throw error
    }

    return reply.code(201).send(await new ODataReader(context.db, actor).readById(RESOURCES.release_asset, id))
  })

  app.get<{Params: {id: string}; Querystring: {token?: unknown}}>('/release-asset/:id', async (request, reply) => {
    const {id, asset} = await assetToDownload(context, request)
    const content = await releaseAssetContentOf(context.db, id)
    if (!content) throw notFound('no such release asset')
    // Served as a download, never rendered: the file is the uploader's and this origin is the dashboard's.
    return reply
      .type('application/octet-stream')
      .header('content-length', asset.size)
      .header('content-disposition', `attachment; filename*=UTF-8''${encodeURIComponent(asset.filename)}`)
      .header('x-content-type-options', 'nosniff')
      .send(content)
  })
}
