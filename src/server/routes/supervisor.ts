import type {FastifyInstance} from 'fastify'

import type {DeviceAction} from '../../protocol/device-action.js'
import {mayAccessDevice} from '../authorization.js'
import {type ServerContext, userActor} from '../context.js'
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

  const restartService = /^\/v2\/applications\/(\d+)\/restart-service$/.exec(path)
  if (restartService) {
    const serviceName = typeof data.serviceName === 'string' ? data.serviceName : undefined
    const imageId = positiveInteger(data.imageId)
    if (!serviceName && imageId === undefined) throw badRequest('restart-service needs serviceName or imageId')
    return {action: 'restart-service', appId: Number(restartService[1]), serviceName, imageId}
  }

  throw badRequest(`unsupported supervisor action: ${path}`)
}

/**
 * `POST /supervisor/<path>`: a supervisor API call for the online devices the body names (one by uuid or id, or
 * every device of a fleet by appId). [flotilla] the call goes to each device as an action, through its link or else
 * queued for `GET /device/v3/:uuid/actions`; the answer says it was sent, not what the device made of it.
 */
export function registerSupervisorRoute(app: FastifyInstance, context: ServerContext, deliver: (deviceId: number, action: DeviceAction) => Promise<void>): void {
  app.post<{Params: {'*': string}}>('/supervisor/*', async (request, reply) => {
    const actor = await userActor(context, request)
    const body = (request.body ?? {}) as SupervisorBody
    const path = `/${request.params['*'].replace(/^\/+/, '')}`
    const method = typeof body.method === 'string' ? body.method.toUpperCase() : 'POST'
    if (method !== 'POST') throw badRequest(`${method} ${path} is not supported through the server`)
    let query = context.db.selectFrom('device').select(['id', 'belongs_to__application']).where('is_online', '=', 1)
    const uuid = typeof body.uuid === 'string' ? body.uuid.toLowerCase() : undefined
    const deviceId = positiveInteger(body.deviceId)
    const appId = positiveInteger(body.appId)
    if (uuid) query = query.where('uuid', '=', uuid)
    else if (deviceId !== undefined) query = query.where('id', '=', deviceId)
    else if (appId !== undefined) query = query.where('belongs_to__application', '=', appId)
    else throw badRequest('name the device (uuid or deviceId) or the fleet (appId)')
    const devices = []
    for (const device of await query.execute()) {
      if (await mayAccessDevice(context.db, actor, device.id, 'send-action')) devices.push(device)
    }

    if (devices.length === 0) throw notFound('No online device(s) found')
    const data = typeof body.data === 'object' && body.data !== null ? (body.data as Record<string, unknown>) : {}
    const queued = devices.map((device) => ({device, action: actionOf(path, data, positiveInteger(data.appId) ?? appId ?? device.belongs_to__application)}))
    for (const {device, action} of queued) await deliver(device.id, action)
    if (queued.length === 1) return reply.type('text/plain').send('OK')
    return reply.code(207).send(queued.map(() => ({statusCode: 200, body: 'OK'})))
  })
}
