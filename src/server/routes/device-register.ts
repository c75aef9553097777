import type {FastifyInstance} from 'fastify'

import {createApiKey} from '../auth/api-keys.js'
import {authenticatedActor, type ServerContext} from '../context.js'
import {recordDeviceHistory} from '../db/device-history.js'
import {ensureServiceInstalls} from '../db/service-installs.js'
import {now} from '../db/values.js'
import {badRequest, HttpError, isUniqueConstraintError, unauthorized} from '../http-errors.js'
import {RESOURCES} from '../odata/model.js'
import {newUuid} from '../odata/resource-rules.js'
import {ODataReader} from '../odata/translate.js'

interface RegisterBody {
  application?: unknown
  device_type?: unknown
  uuid?: unknown
  api_key?: unknown
  supervisor_version?: unknown
  os_version?: unknown
  os_variant?: unknown
  mac_address?: unknown
}

const optionalText = (value: unknown) => (typeof value === 'string' ? value : null)

/**
 * `POST /device/register`: a provisioning key registers a device into its own fleet (a user may register into any
 * fleet they see). The device gets an actor and a device key, the client's own when it sends one.
 */
export function registerDeviceRegistrationRoute(app: FastifyInstance, context: ServerContext): void {
  app.post('/device/register', async (request, reply) => {
    const actor = await authenticatedActor(context, request)
    const body = (request.body ?? {}) as RegisterBody
    const applicationId = Number(body.application)
    if (!Number.isInteger(applicationId)) throw badRequest('application must be the id of a fleet')
    const allowed =
      (actor.kind === 'application' && actor.applicationId === applicationId) ||
      (actor.kind === 'user' && (await new ODataReader(context.db, actor).allVisible(RESOURCES.application, [applicationId])))
    if (!allowed) throw unauthorized()
    if (typeof body.device_type !== 'string') throw badRequest('device_type must be a device type slug')
    const deviceType = await context.db
      .selectFrom('device_type')
      .leftJoin('device_type_alias', 'device_type_alias.device_type', 'device_type.id')
      .select('device_type.id')
      .where((eb) => eb.or([eb('device_type.slug', '=', body.device_type as string), eb('device_type_alias.is_referenced_by__alias', '=', body.device_type as string)]))
      .executeTakeFirst()
    if (!deviceType) throw badRequest(`unknown device type "${body.device_type}"`)
    const uuid = body.uuid === undefined ? newUuid() : String(body.uuid).toLowerCase()
    if (!/^(?:[0-9a-f]{32}|[0-9a-f]{62})$/.test(uuid)) throw badRequest('uuid must be 32 or 62 hex characters')
    if (body.api_key !== undefined && typeof body.api_key !== 'string') throw badRequest('api_key must be a string')
    try {
      const registered = await context.db.transaction().execute(async (trx) => {
        const deviceActor = await trx.insertInto('actor').values({kind: 'device'}).returning('id').executeTakeFirstOrThrow()
        const device = await trx
          .insertInto('device')
          .values({
            created_at: now(),
            uuid,
            device_name: uuid.slice(0, 7),
            is_of__device_type: deviceType.id,
            belongs_to__application: applicationId,
            actor: deviceActor.id,
            is_online: 0,
            api_heartbeat_state: 'unknown',
            is_undervolted: 0,
            is_web_accessible: 0,
            os_version: optionalText(body.os_version),
            os_variant: optionalText(body.os_variant),
            supervisor_version: optionalText(body.supervisor_version),
            mac_address: optionalText(body.mac_address),
          })
          .returning('id')
          .executeTakeFirstOrThrow()
        await ensureServiceInstalls(trx, {deviceIds: [device.id]})
        await recordDeviceHistory(trx, [device.id], actor.actorId)
        const apiKey = await createApiKey(trx, {actorId: deviceActor.id, kind: 'device-api-key', key: body.api_key as string | undefined, name: 'device key'})
        return {id: device.id, uuid, api_key: apiKey}
      })
      return reply.code(201).send(registered)
    } catch (error) {
      if (isUniqueConstraintError(error)) {
        const clash = await context.db.selectFrom('device').select('id').where('uuid', '=', uuid).executeTakeFirst()
        if (clash) throw new HttpError(409, '"uuid" must be unique.', {'content-type': 'text/plain; charset=utf-8'})
        throw new HttpError(409, 'this device key is already in use (unique)')
      }

      throw error
    }
  })
}
