import type {FastifyInstance} from 'fastify'

import type {Actor} from '../auth/actor.js'
import {createApiKey} from '../auth/api-keys.js'
import {mayAccessDevice} from '../authorization.js'
import {authenticatedActor, type ServerContext} from '../context.js'
import {deviceActorOf} from '../db/devices.js'
import {fleetActorOf} from '../db/fleets.js'
import {badRequest, unauthorized} from '../http-errors.js'
import {RESOURCES} from '../odata/model.js'
import {ODataReader} from '../odata/translate.js'

/** How recent a login must be to mint a key that acts as the user. */
export const FRESH_LOGIN_MS = 20 * 60_000

interface KeyBody {
  name?: unknown
  description?: unknown
  expiryDate?: unknown
  apiKey?: unknown
}

function keyDetails(body: KeyBody) {
  const text = (value: unknown, name: string) => {
    if (value === undefined || value === null) return null
    if (typeof value !== 'string') throw badRequest(`${name} must be a string`)
    return value
  }

  return {name: text(body.name, 'name'), description: text(body.description, 'description'), expiryDate: text(body.expiryDate, 'expiryDate')}
}

function parseId(value: unknown): number {
  const id = Number(value)
  if (!Number.isInteger(id) || id <= 0) throw badRequest('the id in the URL must be a positive whole number')
  return id
}

/**
 * The ways of minting API keys; listing and revoking them is pine's `api_key` (a user sees their own keys and the
 * provisioning and device keys of the fleets and devices they reach).
 */
export function registerApiKeyRoutes(app: FastifyInstance, context: ServerContext): void {
  const visibleFleet = async (actor: Actor, id: number) => new ODataReader(context.db, actor).allVisible(RESOURCES.application, [id])

  const userKey = async (actor: Actor, body: KeyBody) => {
    if (actor.kind !== 'user') throw unauthorized()
    if (actor.via !== 'session' || Date.now() - (actor.authTime ?? 0) > FRESH_LOGIN_MS) {
      throw unauthorized('creating an API key needs a login less than 20 minutes old: log in again')
    }

    const details = keyDetails(body)
    if (!details.name?.trim()) throw badRequest('an API key needs a name')
    return createApiKey(context.db, {actorId: actor.actorId, kind: 'named-user-api-key', ...details})
  }

  const provisioningKey = async (actor: Actor, applicationId: number, body: KeyBody) => {
    if (actor.kind !== 'user' || !(await visibleFleet(actor, applicationId))) throw unauthorized()
    return createApiKey(context.db, {actorId: await fleetActorOf(context.db, applicationId), kind: 'provisioning-api-key', ...keyDetails(body)})
  }

  // A new key for a device (a rotation): the device itself or its owners, never a provisioning key (see mayAccessDevice).
  const deviceKey = async (actor: Actor, deviceId: number, body: KeyBody) => {
    if (!(await mayAccessDevice(context.db, actor, deviceId, 'create-key'))) throw unauthorized()
    const deviceActor = await deviceActorOf(context.db, deviceId)
    if (body.apiKey !== undefined && typeof body.apiKey !== 'string') throw badRequest('apiKey must be a string')
    return createApiKey(context.db, {actorId: deviceActor, kind: 'device-api-key', key: body.apiKey as string | undefined, ...keyDetails(body)})
  }

  const send = (key: string) => JSON.stringify(key)

  app.post('/api-key/user/full', async (request, reply) => {
    const key = await userKey(await authenticatedActor(context, request), (request.body ?? {}) as KeyBody)
    return reply.type('application/json').send(send(key))
  })

  app.post<{Params: {appId: string}}>('/api-key/application/:appId/provisioning', async (request, reply) => {
    const key = await provisioningKey(await authenticatedActor(context, request), parseId(request.params.appId), (request.body ?? {}) as KeyBody)
    return reply.type('application/json').send(send(key))
  })

  app.post<{Params: {deviceId: string}}>('/api-key/device/:deviceId/device-key', async (request, reply) => {
    const key = await deviceKey(await authenticatedActor(context, request), parseId(request.params.deviceId), (request.body ?? {}) as KeyBody)
    return reply.type('application/json').send(send(key))
  })

  app.post('/api-key/v2/', async (request, reply) => {
    const actor = await authenticatedActor(context, request)
    const body = (request.body ?? {}) as KeyBody & {actorType?: unknown; actorTypeId?: unknown; roles?: unknown}
    const roles = Array.isArray(body.roles) ? body.roles : []
    let key: string
    if (body.actorType === 'application' && roles.includes('provisioning-api-key')) {
      key = await provisioningKey(actor, parseId(body.actorTypeId), body)
    } else if (body.actorType === 'user' && roles.includes('named-user-api-key')) {
      if (actor.kind !== 'user' || parseId(body.actorTypeId) !== actor.userId) throw unauthorized()
      key = await userKey(actor, body)
    } else if (body.actorType === 'device' && roles.includes('device-api-key')) {
      key = await deviceKey(actor, parseId(body.actorTypeId), body)
    } else {
      throw badRequest('unsupported key: actorType "application" with role "provisioning-api-key", "user" with "named-user-api-key" or "device" with "device-api-key"')
    }

    return reply.type('application/json').send(send(key))
  })
}
