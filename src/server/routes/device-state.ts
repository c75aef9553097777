import type {FastifyInstance, FastifyRequest} from 'fastify'

import type {DeviceAction} from '../../protocol/device-action.js'
import type {DeviceStateReport} from '../../protocol/state-report.js'
import {type DeviceAccess, mayAccessDevice} from '../authorization.js'
import {authenticatedActor, type ServerContext} from '../context.js'
import type {DeviceActionQueue} from '../device-actions.js'
import {computeFleetTargetState, computeTargetState, matchesEntityTag, targetStateV2Of} from '../device-target.js'
import {deviceIdOfUuid, fleetIdOfDevice, markSilentDevicesOffline, recordStateReport, type ReportedImageInstall} from '../db/devices.js'
import {managedFleetIdOfUuid} from '../db/fleets.js'
import {releaseImagesWithServices} from '../db/images.js'
import {releaseIdOfCommit} from '../db/releases.js'
import {now} from '../db/values.js'
import {badRequest, unauthorized} from '../http-errors.js'

export interface DeviceStateSettings {
  actions: DeviceActionQueue
  /** A device that has not reported for this long reads as offline. */
  heartbeatTimeoutMs: number
  /** Devices with a link open are online whatever their last report says. */
  linkedDeviceIds: () => number[]
}

/** Default offline timeout: twice the agent's default poll interval of 15 minutes (it reports every 5 minutes too). */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 30 * 60_000

/** The longest an agent's collect of actions is held open. */
const MAX_ACTION_WAIT_MS = 55_000

const TEXT_FIELDS = ['status', 'os_version', 'os_variant', 'supervisor_version', 'ip_address', 'mac_address'] as const
const NUMBER_FIELDS = ['api_port', 'memory_usage', 'memory_total', 'storage_usage', 'storage_total', 'cpu_usage', 'cpu_temp'] as const

/** The device a request names in its URL, once the actor is known to be allowed this access; 401 otherwise. */
export async function deviceForRequest(context: ServerContext, request: FastifyRequest, uuid: string, access: DeviceAccess): Promise<number> {
  const actor = await authenticatedActor(context, request)
  // A device naming itself (every poll) needs no lookup: its key says which device it is.
  const deviceId = actor.kind === 'device' && actor.uuid === uuid.toLowerCase() ? actor.deviceId : await deviceIdOfUuid(context.db, uuid)
  if (deviceId === undefined || !(await mayAccessDevice(context.db, actor, deviceId, access))) throw unauthorized()
  return deviceId
}

/**
 * The fleet a request names by uuid, when the actor may manage it (its members, its devices); with the release a
 * `releaseUuid` names, which must be a successful release of that fleet. 401 otherwise, as balena answers.
 */
async function fleetForRequest(context: ServerContext, request: FastifyRequest, uuid: string, releaseUuid: unknown): Promise<{appId: number; releaseId?: number}> {
  const actor = await authenticatedActor(context, request)
  if (releaseUuid !== undefined && typeof releaseUuid !== 'string') throw badRequest('releaseUuid must be one release commit')
  const appId = await managedFleetIdOfUuid(context.db, actor, uuid)
  if (appId === undefined) throw unauthorized()
  if (!releaseUuid) return {appId}
  const releaseId = await releaseIdOfCommit(context.db, appId, releaseUuid, {successful: true})
  if (releaseId === undefined) throw unauthorized()
  return {appId, releaseId}
}

function deviceFieldsOf(report: DeviceStateReport): Record<string, string | number | null> {
  const fields: Record<string, string | number | null> = {}
  for (const name of TEXT_FIELDS) if (typeof report[name] === 'string') fields[name] = report[name]
  for (const name of NUMBER_FIELDS) {
    const value = report[name]
    if (typeof value === 'number' && Number.isFinite(value)) fields[name] = Math.round(value)
  }

  return fields
}

async function applyStateReport(context: ServerContext, deviceId: number, report: DeviceStateReport): Promise<void> {
  const {db} = context
  const fleetId = await fleetIdOfDevice(db, deviceId)
  const stamp = now()
  const update: Record<string, string | number | null> = {...deviceFieldsOf(report), is_online: 1, api_heartbeat_state: 'online', last_connectivity_event: stamp}
  const installs: ReportedImageInstall[] = []
  for (const app of Object.values(report.apps ?? {})) {
    const commits = new Set([...(app.release_uuid ? [app.release_uuid] : []), ...Object.keys(app.releases ?? {})])
    for (const commit of commits) {
      const releaseId = await releaseIdOfCommit(db, fleetId, commit)
      if (releaseId === undefined) continue
      if (commit === app.release_uuid) update.is_running__release = releaseId
      const releaseReport = app.releases?.[commit]
      if (!releaseReport) continue
      if (typeof releaseReport.update_status === 'string') update.update_status = releaseReport.update_status
      const images = await releaseImagesWithServices(db, releaseId)
      for (const [serviceName, service] of Object.entries(releaseReport.services ?? {})) {
        const image = images.find((candidate) => candidate.service_name === serviceName)
        if (!image || typeof service.status !== 'string') continue
        installs.push({imageId: image.id, releaseId, status: service.status, progress: typeof service.download_progress === 'number' ? service.download_progress : null})
      }
    }
  }

  await recordStateReport(db, deviceId, {fields: update, installs, stamp})
}

/** A state report's body as it came: its JSON is parsed only when it is not the device's last report again. */
class ReportText {
  constructor(readonly text: string) {}
}

/**
 * `PATCH /device/v3/state`, the device's state report (and heartbeat). An agent reports on a timer, mostly the
 * same report again: one repeated byte for byte is a heartbeat only, known without parsing it (a fleet of 20,000
 * sends 2,000 a second at the bench's rates). Any other is parsed as every JSON body is, checked, and written.
 */
function registerStateReportRoute(app: FastifyInstance, context: ServerContext): void {
  const parseJson = app.getDefaultJsonParser('error', 'error')
  const parse = (request: FastifyRequest, text: string) =>
    new Promise<unknown>((resolve, reject) => parseJson(request, text, (error, body) => (error ? reject(error) : resolve(body))))
  app.register(async (scope) => {
    scope.removeContentTypeParser('application/json')
    scope.addContentTypeParser('application/json', {parseAs: 'string'}, (_request, text, done) => done(null, new ReportText(text as string)))
    scope.patch('/device/v3/state', async (request, reply) => {
      const actor = await authenticatedActor(context, request)
      if (actor.kind !== 'device') throw unauthorized()
      if (!(request.body instanceof ReportText)) throw badRequest('the state report must be a JSON object keyed by the device uuid')
      const {text} = request.body
      if (context.heartbeats.isRepeatedReport(actor.deviceId, text)) {
        await context.heartbeats.beat(actor.deviceId)
        return reply.code(200).send()
      }

      const reports = reportsOf(await parse(request, text), actor.uuid)
      try {
        for (const report of reports) await applyStateReport(context, actor.deviceId, report)
      } catch (error) {
        context.heartbeats.forget(actor.deviceId)
        throw error
      }

      context.heartbeats.wroteOnline(actor.deviceId, text)
      return reply.code(200).send()
    })
  })
}

/** The reports of a state report's body, each of the device itself (401 otherwise, as balena answers). */
function reportsOf(body: unknown, uuid: string): DeviceStateReport[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the state report must be an object keyed by the device uuid')
  const entries = Object.entries(body as Record<string, DeviceStateReport>)
  if (entries.some(([key]) => key.toLowerCase() !== uuid)) throw unauthorized()
  for (const [, report] of entries) if (typeof report !== 'object' || report === null) throw badRequest('the state of a device must be an object')
  return entries.map(([, report]) => report)
}

/**
 * The device's side of the API: its target state (computed live, with a strong ETag), its state report
 * (which is also its heartbeat), and [flotilla] the actions waiting for it. Devices silent for longer than the
 * heartbeat timeout are marked offline by a periodic sweep, so every reader (pine included) sees one truth.
 */
export function registerDeviceStateRoutes(app: FastifyInstance, context: ServerContext, settings: DeviceStateSettings): void {
  const sweepEveryMs = Math.max(250, Math.min(30_000, Math.floor(settings.heartbeatTimeoutMs / 4)))
  // Devices with a link open are alive: their heartbeats are written first (in chunks: a fleet may hold more links
  // than a statement takes parameters), so the sweep leaves them online.
  const sweep = async () => {
    await context.heartbeats.beatAll(settings.linkedDeviceIds())
    await markSilentDevicesOffline(context.db, settings.heartbeatTimeoutMs)
  }
  const sweeper = setInterval(() => {
    sweep().catch((error: unknown) => app.log.error({err: error}, 'marking silent devices offline failed'))
  }, sweepEveryMs)
  sweeper.unref()
  const closing = new AbortController()
  app.addHook('preClose', async () => {
    clearInterval(sweeper)
    closing.abort()
  })

  app.get<{Params: {uuid: string}}>('/device/v3/:uuid/state', async (request, reply) => {
    const deviceId = await deviceForRequest(context, request, request.params.uuid, 'read-target')
    // A device asking for its target is alive: its poll is a heartbeat as much as its report. A heartbeat that
    // cannot be written (a full disk) is logged by the heartbeats, and never keeps the device from its target.
    if ((await authenticatedActor(context, request)).kind === 'device') await context.heartbeats.beat(deviceId)
    // Kept until something a target is made of changes: a poll answered 304 computes nothing.
    const target = await context.targetStates.of(deviceId)
    if (!target) throw unauthorized()
    reply.header('etag', target.etag).header('cache-control', 'no-cache')
    if (matchesEntityTag(request.headers['if-none-match'], target.etag)) return reply.code(304).send()
    return reply.type('application/json').send(target.body)
  })

  // balena-sdk's getSupervisorTargetState: the same target in the older v2 shape.
  app.get<{Params: {uuid: string}}>('/device/v2/:uuid/state', async (request, reply) => {
    const deviceId = await deviceForRequest(context, request, request.params.uuid, 'read-target')
    const target = await computeTargetState(context.db, deviceId)
    if (!target) throw unauthorized()
    return reply.send(targetStateV2Of(target))
  })

  // balena-sdk's getSupervisorTargetStateForApp asks with a trailing slash: `/state/?releaseUuid=`.
  for (const route of ['/device/v3/fleet/:uuid/state', '/device/v3/fleet/:uuid/state/']) {
    app.get<{Params: {uuid: string}; Querystring: {releaseUuid?: unknown}}>(route, async (request, reply) => {
      const {appId, releaseId} = await fleetForRequest(context, request, request.params.uuid, request.query.releaseUuid)
      const target = await computeFleetTargetState(context.db, appId, releaseId)
      if (!target) throw unauthorized()
      return reply.send(target)
    })
  }

  registerStateReportRoute(app, context)

  app.get<{Params: {uuid: string}; Querystring: {wait?: string}}>('/device/v3/:uuid/actions', async (request, reply) => {
    const deviceId = await deviceForRequest(context, request, request.params.uuid, 'report-state')
    const waitMs = Math.min(MAX_ACTION_WAIT_MS, Math.max(0, Number(request.query.wait ?? 0) * 1000 || 0))
    const gone = new AbortController()
    // The response closes when the agent goes away; the request's own close only says its body was read.
    reply.raw.once('close', () => gone.abort())
    const actions: DeviceAction[] = await settings.actions.collect(deviceId, waitMs, AbortSignal.any([gone.signal, closing.signal]))
    return reply.type('application/json').send(JSON.stringify(actions))
  })
}
