import type {FastifyInstance, FastifyRequest} from 'fastify'

import {GUEST_READABLE_RESOURCES} from '../authorization.js'
import {actorOf, authenticatedActor, type ServerContext} from '../context.js'
import {badRequest, unauthorized} from '../http-errors.js'
import {checkODataLimits} from '../odata/limits.js'
import {RESOURCES} from '../odata/model.js'
import {parseODataUrl} from '../odata/parse.js'
import {ODataReader} from '../odata/translate.js'
import {ODataWriter} from '../odata/write.js'

export const API_ROOT = '/v7'

/** The request's pine URL, parsed and held to the limits of odata/limits.ts before anything is read. */
function parsedRequest(request: FastifyRequest) {
  const parsed = parseODataUrl(request.url.slice(API_ROOT.length), API_ROOT)
  checkODataLimits(parsed)
  return parsed
}

export interface PineHooks {
  /** After fleets were deleted: what the server keeps of them outside the database goes too. */
  fleetsDeleted(fleetIds: number[]): Promise<void>
}

/** Pine (OData) over every resource of odata/model.ts: GET, POST, PATCH (and PUT), DELETE. */
export function registerPineRoutes(app: FastifyInstance, context: ServerContext, hooks: PineHooks): void {
  app.get(`${API_ROOT}/*`, async (request) => {
    const parsed = parsedRequest(request)
    const actor = await actorOf(context, request)
    if (actor.kind === 'guest' && !GUEST_READABLE_RESOURCES.has(parsed.resource.name)) throw unauthorized()
    return {d: await new ODataReader(context.db, actor, 'read').read(parsed)}
  })

  app.post(`${API_ROOT}/*`, async (request, reply) => {
    const parsed = parsedRequest(request)
    if (parsed.key || parsed.count) throw badRequest(`POST creates a ${parsed.resource.name}: send it to ${API_ROOT}/${parsed.resource.name}`)
    const actor = await authenticatedActor(context, request)
    const created = await new ODataWriter(context.db, actor, context.registry).create(parsed.resource, request.body)
    context.targetsMaybeChanged()
    return reply.code(201).send(created)
  })

  const update = async (request: FastifyRequest) => {
    const parsed = parsedRequest(request)
    const actor = await authenticatedActor(context, request)
    if (!parsed.key && parsed.options.$filter === undefined) throw badRequest('PATCH needs a key (resource(id)) or a $filter')
    await new ODataWriter(context.db, actor, context.registry).update(parsed, request.body)
    context.targetsMaybeChanged()
    return ''
  }

  app.patch(`${API_ROOT}/*`, async (request, reply) => reply.code(200).send(await update(request)))
  app.put(`${API_ROOT}/*`, async (request, reply) => reply.code(200).send(await update(request)))

  app.delete(`${API_ROOT}/*`, async (request, reply) => {
    const parsed = parsedRequest(request)
    const actor = await authenticatedActor(context, request)
    if (!parsed.key && parsed.options.$filter === undefined) throw badRequest('DELETE needs a key (resource(id)) or a $filter')
    const deleted = await new ODataWriter(context.db, actor).delete(parsed)
    context.targetsMaybeChanged()
    await context.keysMaybeRevoked()
    // The fleets are gone whatever happens to their files: a failure to remove them is the server's to log, not the client's.
    if (parsed.resource === RESOURCES.application && deleted.length > 0) await hooks.fleetsDeleted(deleted).catch((error: unknown) => request.log.warn({err: error}, 'could not remove the files of deleted fleets'))
    return reply.code(200).send('')
  })
}
