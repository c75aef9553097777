import {UsageError} from '../errors.js'
import type {FleetClient} from './client.js'
import {whoami} from './auth.js'

export interface ApiKey {
  id: number
  name: string | null
  description: string | null
  created_at: string
  expiry_date: string | null
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

export async function listApiKeys(client: FleetClient): Promise<ApiKey[]> {
  const actor = await whoami(client)
  return client.pine.get<ApiKey>('api_key', {
    $select: ['id', 'name', 'description', 'created_at', 'expiry_date'],
    $filter: `is_of__actor eq ${actor.id}`,
    $orderby: 'id asc',
  })
}

/** Revokes keys by id; returns the ids that did not exist (or were not yours). */
export async function revokeApiKeys(client: FleetClient, ids: number[]): Promise<number[]> {
  const mine = new Set((await listApiKeys(client)).map((key) => key.id))
  const unknown = ids.filter((id) => !mine.has(id))
  for (const id of ids.filter((candidate) => mine.has(candidate))) await client.pine.delete('api_key', id)
  return unknown
}
