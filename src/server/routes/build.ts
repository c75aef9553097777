import {randomBytes} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import type {Readable} from 'node:stream'

import type Docker from 'dockerode'
import type {FastifyInstance} from 'fastify'

import type {BuildEvent} from '../../protocol/build-events.js'
import type {BuildStore} from '../builder/build-release.js'
import {type ContextLimits, DEFAULT_CONTEXT_LIMITS, extractBuildContext} from '../builder/context.js'
import {type ServerContext, userActor} from '../context.js'
import type {Db} from '../db/database.js'
import {ensureServiceInstalls} from '../db/service-installs.js'
import {now} from '../db/values.js'
import {badRequest, notFound} from '../http-errors.js'
import {RESOURCES} from '../odata/model.js'
import {ODataReader} from '../odata/translate.js'

export interface BuilderSettings {
  /** Where builds run; one engine per server, created on the first build. */
  docker: () => Promise<Docker>
  contextLimits?: ContextLimits
}

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
function releaseStore(db: Db, releaseId: number, applicationId: number, registry: string | null): BuildStore {
  return {
    async ensureService(serviceName) {
      await db.insertInto('service').values({created_at: now(), application: applicationId, service_name: serviceName}).onConflict((conflict) => conflict.doNothing()).execute()
      const row = await db.selectFrom('service').select('id').where('application', '=', applicationId).where('service_name', '=', serviceName).executeTakeFirstOrThrow()
      await ensureServiceInstalls(db, {serviceIds: [row.id]})
      return row.id
    },
    async createImage(serviceId, details) {
      const {newImageRepository} = await import('../builder/build-release.js')
      const location = newImageRepository(registry)
      const image = await db
        .insertInto('image')
        .values({created_at: now(), is_a_build_of__service: serviceId, is_stored_at__image_location: location, status: 'Running', dockerfile: details.dockerfile, project_type: details.projectType, start_timestamp: now()})
        .returning('id')
        .executeTakeFirstOrThrow()
      await db.insertInto('image__is_part_of__release').values({created_at: now(), image: image.id, is_part_of__release: releaseId}).execute()
      return {imageId: image.id, location}
    },
    async updateImage(imageId, patch) {
      await db.updateTable('image').set(patch).where('id', '=', imageId).execute()
    },
    async isCancelled() {
      const row = await db.selectFrom('release').select('status').where('id', '=', releaseId).executeTakeFirst()
      return row?.status === 'cancelled'
    },
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

/**
 * `POST /v3/build`: receives the project as a gzip'd tar, creates a release, builds and pushes every service,
 * and streams the build log back. The release ends `success` only when every image is built and pushed; then it
 * becomes the fleet's target unless it is a draft or the fleet is pinned, and only when it is newer than the target.
 */
export function registerBuildRoutes(app: FastifyInstance, context: ServerContext, settings: BuilderSettings): void {
  app.addHook('onReady', async () => {
    // A build that was running when the server stopped can never finish: say so rather than leave it "running".
    await context.db.updateTable('release').set({status: 'interrupted', end_timestamp: now()}).where('status', '=', 'running').where('source', '=', 'cloud').execute()
  })

  app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload))
    scope.post('/v3/build', async (request, reply) => {
      const actor = await userActor(context, request)
      const query = request.query as BuildQuery
      if (!query.slug) throw badRequest('slug is required: the fleet to build for, as org/name')
      const fleet = await context.db
        .selectFrom('application')
        .innerJoin('device_type', 'device_type.id', 'application.is_for__device_type')
        .innerJoin('cpu_architecture', 'cpu_architecture.id', 'device_type.is_of__cpu_architecture')
        .select(['application.id', 'application.slug', 'device_type.slug as deviceType', 'cpu_architecture.slug as arch'])
        .where('application.slug', '=', query.slug.toLowerCase())
        .executeTakeFirst()
      if (!fleet || !(await new ODataReader(context.db, actor).allVisible(RESOURCES.application, [fleet.id]))) throw notFound(`fleet "${query.slug}" not found`)
      const draft = query.isdraft === 'true'
      const release = await context.db
        .insertInto('release')
        .values({
          created_at: now(),
          belongs_to__application: fleet.id,
          commit: randomBytes(16).toString('hex'),
          composition: '{}',
          status: 'running',
          source: 'cloud',
          start_timestamp: now(),
          is_final: draft ? 0 : 1,
          semver: '0.0.0',
          is_invalidated: 0,
          is_created_by__user: actor.userId,
        })
        .returning('id')
        .executeTakeFirstOrThrow()

      const body = request.body as Readable
      const headless = query.headless === 'true'
      const contextDir = await mkdtemp(path.join(tmpdir(), `flotilla-build-${release.id}-`))
      const cancel = new AbortController()
      const cancelWatch = setInterval(async () => {
        const row = await context.db.selectFrom('release').select('status').where('id', '=', release.id).executeTakeFirst()
        if (row?.status === 'cancelled') cancel.abort()
      }, CANCEL_POLL_MS)

      reply.hijack()
      let stream: ReturnType<typeof jsonArrayWriter> | undefined
      const emit = (event: BuildEvent) => stream?.write(event)
      if (headless) {
        reply.raw.writeHead(200, {'content-type': 'application/json'})
      } else {
        reply.raw.writeHead(200, {'content-type': 'application/json', 'cache-control': 'no-cache'})
        stream = jsonArrayWriter(reply.raw)
        emit({type: 'metadata', resource: 'buildLogId', value: release.id})
        emit({message: `[Info] Starting build for fleet ${fleet.slug}, release ${release.id}`})
      }

      const finish = async (status: string, fields: {build_log: string; composition?: unknown}) => {
        await context.db
          .updateTable('release')
          .set({status, end_timestamp: now(), build_log: fields.build_log, ...(fields.composition === undefined ? {} : {composition: JSON.stringify(fields.composition)})})
          .where('id', '=', release.id)
          .where('status', '=', 'running')
          .execute()
        if (status === 'success' && !draft) {
          await context.db
            .updateTable('application')
            .set({should_be_running__release: release.id})
            .where('id', '=', fleet.id)
            .where('should_track_latest_release', '=', 1)
            .where((eb) => eb.or([eb('should_be_running__release', 'is', null), eb('should_be_running__release', '<', release.id)]))
            .execute()
          context.targetsMaybeChanged()
        }
      }

      try {
        try {
          await extractBuildContext(body, contextDir, settings.contextLimits ?? DEFAULT_CONTEXT_LIMITS)
        } catch (error) {
          body.resume()
          const message = `[Error] ${(error as Error).message}`
          await finish('failed', {build_log: message})
          if (headless) reply.raw.end(JSON.stringify({started: false, error: 'invalid context', message: (error as Error).message}))
          else emit({message, isError: true})
          return
        }

        if (headless) reply.raw.end(JSON.stringify({started: true, releaseId: release.id}))
        const {buildRelease} = await import('../builder/build-release.js')
        const result = await buildRelease({
          docker: await settings.docker(),
          contextDir,
          deviceType: fleet.deviceType,
          arch: fleet.arch,
          dockerfilePath: query.dockerfilePath || undefined,
          nocache: query.nocache === 'true',
          registry: context.registry,
          store: releaseStore(context.db, release.id, fleet.id, context.registry),
          signal: cancel.signal,
          emit,
        })
        await finish(result.status, {build_log: result.buildLog, composition: result.composition})
      } catch (error) {
        request.log.error({err: error}, 'build failed')
        await finish('failed', {build_log: `[Error] ${(error as Error).message}`}).catch(() => undefined)
        emit({message: `[Error] the builder failed: ${(error as Error).message}`, isError: true})
      } finally {
        clearInterval(cancelWatch)
        stream?.end()
        if (headless && !reply.raw.writableEnded) reply.raw.end()
        await rm(contextDir, {recursive: true, force: true})
      }
    })
  })
}
