import type {FastifyInstance} from 'fastify'

import {authenticatedActor, type ServerContext} from '../context.js'
import {deviceTypeNamed} from '../db/device-types.js'
import {deviceIdOfUuid, registerDevice} from '../db/devices.js'
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
    const deviceType = await deviceTypeNamed(context.db, body.device_type)
    if (!deviceType) throw badRequest(`unknown device type "${body.device_type}"`)
    const uuid = body.uuid === undefined ? newUuid() : String(body.uuid).toLowerCase()
    if (!/^(?:[0-9a-f]{32}|[0-9a-f]{62})$/.test(uuid)) throw badRequest('uuid must be 32 or 62 hex characters')
    if (body.api_key !== undefined && typeof body.api_key !== 'string') throw badRequest('api_key must be a string')
    try {
      const registered = await registerDevice(context.db, {
        uuid,
        deviceTypeId: deviceType.id,
        fleetId: applicationId,
        reported: {os_version: optionalText(body.os_version), os_variant: optionalText(body.os_variant), supervisor_version: optionalText(body.supervisor_version), mac_address: optionalText(body.mac_address)},
        apiKey: body.api_key as string | undefined,
        registeredBy: actor.actorId,
      })
      return reply.code(201).send(registered)
    } catch (error) {
      if (isUniqueConstraintError(error)) {
        if (await deviceIdOfUuid(context.db, uuid)) throw new HttpError(409, '"uuid" must be unique.', {'content-type': 'text/plain; charset=utf-8'})
        throw new HttpError(409, 'this device key is already in use (unique)')
      }

      throw error
    }
  })
}
