import type {ServerResponse} from 'node:http'
import type {Readable} from 'node:stream'

import type Docker from 'dockerode'
import type {FastifyInstance} from 'fastify'

import type {BuildEvent} from '../../protocol/build-events.js'
import {BUILD_CONTENTS_PATH, CONTENT_HASH_PATTERN, type ContentsAnswer} from '../../protocol/build-upload.js'
import {formatBytes} from '../../image/format.js'
import type {BuildStore} from '../builder/build-release.js'
import type {BuildContentStore, StoreUpload} from '../builder/content-store.js'
import type {BuildNetwork} from '../builder/docker-builder.js'
import {REGISTRY_SECRETS_PATH} from '../builder/image-sources.js'
import {DEFAULT_UPLOAD_LIMITS, type MissingContentsError, type UploadedProject, type UploadLimits} from '../builder/upload.js'
import {ExpectedError} from '../../errors.js'
import {type ServerContext, userActor} from '../context.js'
import type {Db} from '../db/database.js'
import {existingFleetIds, fleetPlatformBySlug} from '../db/fleets.js'
import {addImageToRelease, createRunningImage, ensureService, findReusableImage, updateImage} from '../db/images.js'
import {badRequest, HttpError, notFound} from '../http-errors.js'
import {RESOURCES} from '../odata/model.js'
import {type BuildInterruptions, ReleaseLifecycle} from '../releases/lifecycle.js'
import {ODataReader} from '../odata/translate.js'

export interface BuilderSettings {
  /** Where builds run; one engine per server, created on the first build. */
  docker: () => Promise<Docker>
  uploadLimits?: UploadLimits
  /** The network of RUN steps; `default` falls back to none on an engine without a default bridge. */
  network?: BuildNetwork
  /** How long one release's build may take. */
  timeoutMs?: number
  /** `host:port` of a Docker Hub mirror image-only services are pulled from when the engine lacks them. */
  registryMirror?: string | null
  /** Where the builder keeps the contents of each fleet's latest uploads, so a re-push sends only what changed; none: every push sends everything. */
  contentsFolder?: string
}

export const DEFAULT_BUILD_TIMEOUT_MS = 60 * 60 * 1000

/** How often a running build looks whether a client cancelled its release (balena clients PATCH the status). */
const CANCEL_POLL_MS = 1000

interface BuildQuery {
  slug?: string
  dockerfilePath?: string
  nocache?: string
  headless?: string
  isdraft?: string
}

/** The database side of one release's build. */
function releaseStore(db: Db, releases: ReleaseLifecycle, releaseId: number, fleetId: number, registry: string | null): BuildStore {
  return {
    ensureService: (serviceName) => ensureService(db, fleetId, serviceName),
    async createImage(serviceId, details) {
      const {newImageRepository} = await import('../builder/build-release.js')
      const location = newImageRepository(registry)
      const imageId = await createRunningImage(db, {serviceId, location, dockerfile: details.dockerfile, projectType: details.projectType})
      await addImageToRelease(db, imageId, releaseId)
      return {imageId, location}
    },
    updateImage: (imageId, patch) => updateImage(db, imageId, patch),
    async isCancelled() {
      return (await releases.statusOf(releaseId)) === 'cancelled'
    },
    findReusableImage: (serviceName, contextDigest) => findReusableImage(db, fleetId, serviceName, contextDigest),
    reuseImage: (imageId) => addImageToRelease(db, imageId, releaseId),
  }
}

/** Streams a JSON array item by item, as balena's builder answers. */
function jsonArrayWriter(raw: NodeJS.WritableStream) {
  let first = true
  raw.write('[')
  return {
    write(event: BuildEvent) {
      raw.write((first ? '' : ',') + JSON.stringify(event))
      first = false
    },
    end() {
      raw.end(']')
    },
  }
}

interface BuildFleet {
  id: number
  slug: string
  deviceType: string
  arch: string
}

/** The fleet a build is for, when the user may build for it. */
async function buildFleet(context: ServerContext, actor: Awaited<ReturnType<typeof userActor>>, slug: string): Promise<BuildFleet> {
  const fleet = await fleetPlatformBySlug(context.db, slug)
  if (!fleet || !(await new ODataReader(context.db, actor).allVisible(RESOURCES.application, [fleet.id]))) throw notFound(`fleet "${slug}" not found`)
  return fleet
}

/** A build's output: balena's streamed JSON array of events, or, headless, one JSON object once the upload is in. */
function buildResponse(raw: ServerResponse, headless: boolean) {
  raw.writeHead(200, headless ? {'content-type': 'application/json'} : {'content-type': 'application/json', 'cache-control': 'no-cache'})
  const stream = headless ? undefined : jsonArrayWriter(raw)
  return {
    emit: (event: BuildEvent) => stream?.write(event),
    uploadRefused(message: string, missing?: string[]) {
      if (headless) raw.end(JSON.stringify({started: false, error: 'invalid context', message, ...(missing ? {missing} : {})}))
      else {
        if (missing) stream?.write({type: 'metadata', resource: 'missingContents', value: missing})
        stream?.write({message: `[Error] ${message}`, isError: true})
      }
    },
    started(releaseId: number) {
      if (headless) raw.end(JSON.stringify({started: true, releaseId}))
    },
    end() {
      stream?.end()
      if (headless && !raw.writableEnded) raw.end()
    },
  }
}

/** The network builds get: `default` needs the engine's default bridge, which an engine started with `--bridge=none` lacks. */
async function effectiveBuildNetwork(docker: Docker, wanted: BuildNetwork): Promise<{network: BuildNetwork; warning?: string}> {
  if (wanted !== 'default') return {network: wanted}
  const bridge = await docker.getNetwork('bridge').inspect().catch(() => undefined)
  if (bridge) return {network: wanted}
  return {network: 'none', warning: '[Warn] The Docker engine has no default bridge network: RUN steps run without a network (server start --build-network)'}
}

/** The largest contents query: one hash (64 hex digits, quoted, a comma) for each entry an upload may hold. */
function contentsQueryLimit(limits: UploadLimits): number {
  return limits.maxEntries * 70 + 1024
}

/** Reads a JSON request body of at most `maxBytes` from the stream the build scope hands over. */
async function readJsonBody(body: Readable, maxBytes: number): Promise<unknown> {
  const chunks: Buffer[] = []
  let bytes = 0
  for await (const chunk of body as AsyncIterable<Buffer>) {
    bytes += chunk.length
    if (bytes > maxBytes) throw new HttpError(413, `the contents query is larger than ${maxBytes} bytes: it holds one hash a file`)
    chunks.push(chunk)
  }

  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw badRequest('the contents query must be JSON: {"sha256": ["<64 hex digits>", …]}')
  }
}

/**
 * [flotilla] `POST /v3/build/contents?slug=<org/fleet>` `{"sha256": [...]}` → `{"missing": [...]}`: which file contents
 * the fleet's store lacks, so the upload that follows carries only those (protocol/build-upload.ts).
 */
function registerContentsRoute(scope: FastifyInstance, context: ServerContext, store: BuildContentStore | undefined, limits: UploadLimits): void {
  scope.post(BUILD_CONTENTS_PATH, async (request) => {
    const actor = await userActor(context, request)
    const query = request.query as BuildQuery
    if (!query.slug) throw badRequest('slug is required: the fleet to build for, as org/name')
    const fleet = await buildFleet(context, actor, query.slug)
    const body = (await readJsonBody(request.body as Readable, contentsQueryLimit(limits))) as {sha256?: unknown}
    const hashes = body?.sha256
    if (!Array.isArray(hashes) || hashes.length > limits.maxEntries || !hashes.every((hash) => typeof hash === 'string' && CONTENT_HASH_PATTERN.test(hash))) {
      throw badRequest(`the contents query must be {"sha256": [...]} with at most ${limits.maxEntries} hashes of 64 lower-case hex digits`)
    }

    const answer: ContentsAnswer = {missing: store ? await store.missing(fleet.id, hashes as string[]) : [...new Set(hashes as string[])]}
    return answer
  })
}

/** The upload as received, against the fleet's stored contents when the builder keeps them; a refusal is an ExpectedError. */
async function receiveUpload(body: Readable, limits: UploadLimits, upload: StoreUpload | undefined): Promise<UploadedProject> {
  const {UploadedProject} = await import('../builder/upload.js')
  const project = await UploadedProject.receive(body, limits, undefined, upload?.known)
  await upload?.record(project)
  return project
}

function describeUpload(project: UploadedProject): string {
  const {receivedFiles, receivedBytes, storedFiles, storedBytes} = project.summary
  return `[Info] Upload: ${receivedFiles} files (${formatBytes(receivedBytes)}) sent, ${storedFiles} files (${formatBytes(storedBytes)}) unchanged since earlier pushes`
}

/** The contents kept of fleets deleted where this server did not hear of it (through another instance, or while it was down). */
async function removeContentsOfDeletedFleets(db: Db, store: BuildContentStore): Promise<void> {
  const stored = await store.storedFleetIds()
  const existing = await existingFleetIds(db, stored)
  for (const fleetId of stored) if (!existing.has(fleetId)) await store.removeFleet(fleetId)
}

/** What the builder keeps of fleets on disk, for their deletion to remove. */
export interface BuilderFleetFiles {
  /** Removes the contents kept of these fleets' uploads. */
  removeFleets(fleetIds: number[]): Promise<void>
}

/**
 * `POST /v3/build`: receives the project as a gzip'd tar, creates a release, builds and pushes every service,
 * and streams the build log back. The release ends `success` only when every image is built and pushed; then it
 * becomes the fleet's target unless it is a draft or the fleet is pinned, and only when it is newer than the target.
 * The upload is read into an index and one spool file, never unpacked: see UploadedProject.
 * Its contents are kept per fleet (BuildContentStore) so that the next push sends only what changed.
 */
export function registerBuildRoutes(app: FastifyInstance, context: ServerContext, settings: BuilderSettings): BuilderFleetFiles {
  const limits = settings.uploadLimits ?? DEFAULT_UPLOAD_LIMITS
  const releases = new ReleaseLifecycle(context.db, () => context.targetsMaybeChanged(), context.instanceId)
  const contentStore = settings.contentsFolder ? import('../builder/content-store.js').then(({BuildContentStore}) => new BuildContentStore(settings.contentsFolder as string)) : undefined
  let interruptions: BuildInterruptions | undefined
  app.addHook('onReady', async () => {
    interruptions = await releases.startInterruptingCutOffBuilds({onError: (error) => app.log.warn({err: error}, 'interrupting the builds of stopped instances failed')})
    const store = await contentStore
    if (store) await removeContentsOfDeletedFleets(context.db, store).catch((error: unknown) => app.log.warn({err: error}, 'could not remove the kept contents of deleted fleets'))
  })
  app.addHook('onClose', async () => interruptions?.stop())
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
    registerContentsRoute(scope, context, await contentStore, limits)
    scope.post('/v3/build', async (request, reply) => {
      const actor = await userActor(context, request)
      const query = request.query as BuildQuery
      if (!query.slug) throw badRequest('slug is required: the fleet to build for, as org/name')
      const declaredBytes = Number(request.headers['content-length'] ?? 0)
      if (declaredBytes > limits.maxUploadBytes) {
        throw new HttpError(413, `the upload is ${Math.ceil(declaredBytes / 1024 / 1024)} MiB, more than the server's limit of ${Math.floor(limits.maxUploadBytes / 1024 / 1024)} MiB — make the project smaller (.dockerignore) or raise the server's --max-upload`)
      }

      const fleet = await buildFleet(context, actor, query.slug)
      const draft = query.isdraft === 'true'
      const releaseId = await releases.createBuild({fleetId: fleet.id, userId: actor.userId, draft})
      const cancel = new AbortController()
      const cancelWatch = setInterval(async () => {
        if ((await releases.statusOf(releaseId)) === 'cancelled') cancel.abort()
      }, CANCEL_POLL_MS)

      reply.hijack()
      const response = buildResponse(reply.raw, query.headless === 'true')
      response.emit({type: 'metadata', resource: 'buildLogId', value: releaseId})
      response.emit({message: `[Info] Starting build for fleet ${fleet.slug}, release ${releaseId}`})
      let project: UploadedProject | undefined
      let revokeCredential: (() => void) | undefined
      const upload = await (await contentStore)?.openUpload(fleet.id)
      let storing: Promise<void> | undefined
      try {
        try {
          project = await receiveUpload(request.body as Readable, limits, upload)
        } catch (error) {
          if (!(error instanceof ExpectedError)) throw error
          await releases.fail(releaseId, error.message)
          response.uploadRefused(error.message, (error as Partial<MissingContentsError>).missing)
          return
        }

        response.started(releaseId)
        response.emit({message: describeUpload(project)})
        // Kept beside the build: the next push of the fleet sends only what changed. Never the registry secrets.
        storing = upload?.store(project, (name) => name === REGISTRY_SECRETS_PATH).catch((error: unknown) => request.log.warn({err: error}, 'could not keep the upload\'s contents'))
        const docker = await settings.docker()
        const {network, warning} = await effectiveBuildNetwork(docker, settings.network ?? 'default')
        if (warning) response.emit({message: warning})
        const {buildRelease} = await import('../builder/build-release.js')
        // The engine asks the token endpoint for push access with it; it reaches this release's images, until revoked below.
        const credential = context.registry ? context.registryAuthority?.builds.issue(releaseId, context.registry) : undefined
        revokeCredential = credential?.revoke
        const result = await buildRelease({
          docker,
          project,
          deviceType: fleet.deviceType,
          arch: fleet.arch,
          dockerfilePath: query.dockerfilePath || undefined,
          nocache: query.nocache === 'true',
          registry: context.registry,
          registryMirror: settings.registryMirror ?? null,
          registryCredentials: credential?.credentials,
          store: releaseStore(context.db, releases, releaseId, fleet.id, context.registry),
          network,
          timeoutMs: settings.timeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS,
          signal: cancel.signal,
          emit: response.emit,
        })
        await releases.finish(releaseId, {status: result.status, buildLog: result.buildLog, composition: result.composition})
      } catch (error) {
        request.log.error({err: error}, 'build failed')
        await releases.fail(releaseId, (error as Error).message).catch(() => undefined)
        response.emit({message: `[Error] the builder failed: ${(error as Error).message}`, isError: true})
      } finally {
        clearInterval(cancelWatch)
        revokeCredential?.()
        await storing
        await upload?.end().catch((error: unknown) => request.log.warn({err: error}, 'could not prune the fleet\'s stored contents'))
        await project?.dispose()
        response.end()
      }
    })
  })
  return {
    async removeFleets(fleetIds) {
      const store = await contentStore
      for (const fleetId of fleetIds) await store?.removeFleet(fleetId)
    },
  }
}
