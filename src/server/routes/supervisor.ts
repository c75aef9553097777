import type {FastifyInstance} from 'fastify'

import type {DeviceAction} from '../../protocol/device-action.js'
import {mayAccessDevice} from '../authorization.js'
import {type ServerContext, userActor} from '../context.js'
import {deviceStatusOf, onlineDevices, type OnlineDeviceSelector} from '../db/devices.js'
import {isFleetMember} from '../db/fleets.js'
import {badRequest, notFound} from '../http-errors.js'

interface SupervisorBody {
  uuid?: unknown
  deviceId?: unknown
  appId?: unknown
  method?: unknown
  data?: unknown
}

const positiveInteger = (value: unknown): number | undefined => {
  const number = Number(value)
  return value !== undefined && value !== null && Number.isInteger(number) && number > 0 ? number : undefined
}

/** The action a supervisor API call stands for, for a device of fleet `appId`. */
function actionOf(path: string, data: Record<string, unknown>, appId: number): DeviceAction {
  const force = data.force === true
  switch (path) {
    case '/v1/restart': {
      return {action: 'restart', appId}
    }

    case '/v1/reboot': {
      return {action: 'reboot', force}
    }

    case '/v1/shutdown': {
      return {action: 'shutdown', force}
    }

    case '/v1/blink': {
      return {action: 'blink'}
    }

    case '/v1/purge': {
      return {action: 'purge', appId, force}
    }
  }

  const serviceAction = /^\/v2\/applications\/(\d+)\/(restart|stop|start)-service$/.exec(path)
  if (serviceAction) {
    const action = `${serviceAction[2] as 'restart' | 'stop' | 'start'}-service` as const
    const serviceName = typeof data.serviceName === 'string' ? data.serviceName : undefined
    const imageId = positiveInteger(data.imageId)
    if (!serviceName && imageId === undefined) throw badRequest(`${action} needs serviceName or imageId`)
    return {action, appId: Number(serviceAction[1]), serviceName, imageId}
  }

  throw badRequest(`unsupported supervisor action: ${path}`)
}

/** The supervisor reads the server answers itself, from what the device last reported. */
const READS = new Set(['/ping', '/v1/device'])

/** The supervisor's `GET /v1/device` (its status), from the device's last report. */
async function supervisorDeviceOf(context: ServerContext, deviceId: number): Promise<Record<string, unknown>> {
  const device = await deviceStatusOf(context.db, deviceId)
  return {
    api_port: device.api_port,
    ip_address: device.ip_address,
    mac_address: device.mac_address,
    os_version: device.os_version,
    supervisor_version: device.supervisor_version,
    status: device.status ?? 'Idle',
    download_progress: device.download_progress ?? null,
    commit: device.commit ?? null,
    update_pending: device.update_status !== null && device.update_status !== 'done',
    update_downloaded: device.update_status === 'downloaded',
    update_failed: device.update_status === 'aborted' || device.update_status === 'rejected',
  }
}

/**
 * `POST /supervisor/<path>`: a supervisor API call for the online devices the body names (one by uuid or id, or
 * every device of a fleet by appId). [flotilla] the call goes to each device as an action, through its link or else
 * queued for `GET /device/v3/:uuid/actions`; the answer says it was sent, not what the device made of it.
 * `method: "GET"` of `/ping` and `/v1/device` are answered by the server from the device's last report.
 */
export function registerSupervisorRoute(app: FastifyInstance, context: ServerContext, deliver: (deviceId: number, action: DeviceAction) => Promise<void>): void {
  app.post<{Params: {'*': string}}>('/supervisor/*', async (request, reply) => {
    const actor = await userActor(context, request)
    const body = (request.body ?? {}) as SupervisorBody
    const path = `/${request.params['*'].replace(/^\/+/, '')}`
    const method = typeof body.method === 'string' ? body.method.toUpperCase() : 'POST'
    if (method !== 'POST' && !(method === 'GET' && READS.has(path))) throw badRequest(`${method} ${path} is not supported through the server`)
    const uuid = typeof body.uuid === 'string' ? body.uuid : undefined
    const deviceId = positiveInteger(body.deviceId)
    const appId = positiveInteger(body.appId)
    let selector: OnlineDeviceSelector
    if (uuid) selector = {uuid}
    else if (deviceId !== undefined) selector = {deviceId}
    else if (appId !== undefined) selector = {fleetId: appId}
    else throw badRequest('name the device (uuid or deviceId) or the fleet (appId)')
    const devices = []
    for (const device of await onlineDevices(context.db, selector)) {
      if (await mayAccessDevice(context.db, actor, device.id, 'send-action')) devices.push(device)
    }

    if (devices.length === 0) throw notFound('No online device(s) found')
    if (method === 'GET') {
      if (devices.length > 1) throw badRequest(`GET ${path} reads one device: name it by uuid or deviceId`)
      return path === '/ping' ? reply.type('text/plain').send('OK') : reply.send(await supervisorDeviceOf(context, devices[0].id))
    }

    const data = typeof body.data === 'object' && body.data !== null ? (body.data as Record<string, unknown>) : {}
    const queued = devices.map((device) => ({device, action: actionOf(path, data, positiveInteger(data.appId) ?? appId ?? device.belongs_to__application)}))
    for (const {device, action} of queued) await deliver(device.id, action)
    if (queued.length === 1) return reply.type('text/plain').send('OK')
    return reply.code(207).send(queued.map(() => ({statusCode: 200, body: 'OK'})))
  })
}

/**
 * balena's `POST /application/<id>/restart` (`balena fleet restart`): restarts the services of every online device
 * of the fleet, as `POST /supervisor/v1/restart` with its appId does. A fleet the caller cannot see is a 404.
 */
export function registerFleetRestartRoute(app: FastifyInstance, context: ServerContext, deliver: (deviceId: number, action: DeviceAction) => Promise<void>): void {
  app.post<{Params: {id: string}}>('/application/:id/restart', async (request, reply) => {
    const actor = await userActor(context, request)
    const appId = positiveInteger(request.params.id)
    if (appId === undefined || !(await isFleetMember(context.db, appId, actor.userId))) throw notFound(`no fleet ${request.params.id} that you can access`)
    const devices = await onlineDevices(context.db, {fleetId: appId})
    for (const device of devices) {
      if (await mayAccessDevice(context.db, actor, device.id, 'send-action')) await deliver(device.id, {action: 'restart', appId})
    }

    return reply.type('text/plain').send('OK')
  })
}

