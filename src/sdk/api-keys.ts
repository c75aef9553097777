import {UsageError} from '../errors.js'
import type {FleetClient} from './client.js'
import {whoami} from './auth.js'
import {getDevice} from './devices.js'
import {getFleet} from './fleets.js'

export interface ApiKey {
  id: number
  name: string | null
  description: string | null
  created_at: string
  expiry_date: string | null
}

/** Whose keys: yours (the default), a fleet's provisioning keys, or a device's keys. */
export interface ApiKeyOwner {
  fleet?: string
  device?: string
}

/** Creates a named API key of the logged-in user; the key is shown only now, the server keeps a hash. */
export async function generateApiKey(
  client: FleetClient,
  options: {name: string; description?: string; expiryDate?: Date | null},
): Promise<string> {
  if (options.name.trim() === '') throw new UsageError('an API key needs a name')
  return client.request<string>('POST', '/api-key/user/full', {
    json: {name: options.name, description: options.description ?? null, expiryDate: options.expiryDate?.toISOString() ?? null},
  })
}

/** The actor id of a fleet or device row: a reference (`{__id}`) as pine sends it, or a bare number. */
function actorIdOf(row: {actor: number | {__id: number}} | undefined, what: string): number {
  const actor = row?.actor
  if (typeof actor === 'number') return actor
  if (actor && typeof actor.__id === 'number') return actor.__id
  throw new UsageError(`the server did not say which actor ${what} is`)
}

async function ownerActorId(client: FleetClient, owner: ApiKeyOwner): Promise<number> {
  if (owner.fleet !== undefined && owner.device !== undefined) throw new UsageError('give either --fleet or --device, not both')
  if (owner.fleet !== undefined) {
    const fleet = await getFleet(client, owner.fleet)
    const [row] = await client.pine.get<{actor: number | {__id: number}}>('application', {$select: ['actor'], $filter: `id eq ${fleet.id}`})
    return actorIdOf(row, `fleet ${fleet.slug}`)
  }

  if (owner.device !== undefined) {
    const device = await getDevice(client, owner.device)
    const [row] = await client.pine.get<{actor: number | {__id: number}}>('device', {$select: ['actor'], $filter: `id eq ${device.id}`})
    return actorIdOf(row, `device ${device.uuid}`)
  }

  return (await whoami(client)).id
}

/** API keys (never the keys themselves) of the logged-in user, or of a fleet or device they reach. */
export async function listApiKeys(client: FleetClient, owner: ApiKeyOwner = {}): Promise<ApiKey[]> {
  const actorId = await ownerActorId(client, owner)
  return client.pine.get<ApiKey>('api_key', {
    $select: ['id', 'name', 'description', 'created_at', 'expiry_date'],
    $filter: `is_of__actor eq ${actorId}`,
    $orderby: 'id asc',
  })
}

/**
 * Revokes keys by id: yours, or a provisioning or device key of a fleet or device you reach. Returns the ids
 * that did not exist or are not yours to revoke; nothing is revoked then.
 */
export async function revokeApiKeys(client: FleetClient, ids: number[]): Promise<number[]> {
  if (ids.length === 0) return []
  const visible = await client.pine.get<{id: number}>('api_key', {$select: ['id'], $filter: `id in (${ids.join(',')})`})
  const known = new Set(visible.map((key) => key.id))
  const unknown = ids.filter((id) => !known.has(id))
  if (unknown.length > 0) return unknown
  for (const id of ids) await client.pine.delete('api_key', id)
  return []
}
