import type {Db} from '../db/database.js'
import {hashApiKey} from './api-keys.js'
import {looksLikeJwt, verifySession} from './tokens.js'

/** Who a request acts as: every authorization decision starts from one of these. */
export type Actor =
  | {kind: 'user'; actorId: number; userId: number; username: string; email: string; via: 'session' | 'api-key'; authTime?: number}
  | {kind: 'application'; actorId: number; applicationId: number; slug: string}
  /** `keyId`: the device key it came with, so what that key opened (the device link) can be closed when it is revoked. */
  | {kind: 'device'; actorId: number; deviceId: number; uuid: string; applicationId: number; keyId: number}
  /** No credentials: may read only what balena shows everyone (device types). */
  | {kind: 'guest'}

export const GUEST: Actor = {kind: 'guest'}

/** The credential of a request: `Authorization: Bearer <token>`, else `?apikey=`. */
export function credentialOf(headers: {authorization?: string}, query: unknown): string | undefined {
  const header = headers.authorization?.match(/^Bearer\s+(\S+)\s*$/i)
  if (header) return header[1]
  const apikey = (query as {apikey?: unknown} | undefined)?.apikey
  return typeof apikey === 'string' && apikey !== '' ? apikey : undefined
}

async function actorOfSession(db: Db, secret: Uint8Array, token: string): Promise<Actor | undefined> {
  const claims = await verifySession(secret, token)
  if (!claims) return undefined
  const user = await db.selectFrom('user').select(['id', 'actor', 'username', 'email', 'jwt_secret']).where('id', '=', claims.id).executeTakeFirst()
  if (!user || user.jwt_secret !== claims.jwt_secret) return undefined
  return {kind: 'user', actorId: user.actor, userId: user.id, username: user.username, email: user.email, via: 'session', authTime: claims.authTime}
}

/** The actor of an API key and when the key expires (ms since the epoch, null: never); undefined when it is unknown, expired or its owner is gone. */
export async function resolveApiKey(db: Db, key: string): Promise<{actor: Actor; expiresAt: number | null} | undefined> {
  const row = await db
    .selectFrom('api_key')
    .innerJoin('actor', 'actor.id', 'api_key.is_of__actor')
    .select(['api_key.id as keyId', 'api_key.is_of__actor as actorId', 'api_key.expiry_date', 'actor.kind'])
    .where('api_key.key_hash', '=', hashApiKey(key))
    .executeTakeFirst()
  const expiresAt = row?.expiry_date ? new Date(row.expiry_date).getTime() : null
  if (!row || (expiresAt !== null && expiresAt <= Date.now())) return undefined
  const actor = await ownerOfApiKey(db, row)
  return actor && {actor, expiresAt}
}

async function ownerOfApiKey(db: Db, row: {keyId: number; actorId: number; kind: string}): Promise<Actor | undefined> {
  if (row.kind === 'user') {
    const user = await db.selectFrom('user').select(['id', 'username', 'email']).where('actor', '=', row.actorId).executeTakeFirst()
    return user && {kind: 'user', actorId: row.actorId, userId: user.id, username: user.username, email: user.email, via: 'api-key'}
  }

  if (row.kind === 'application') {
    const fleet = await db.selectFrom('application').select(['id', 'slug']).where('actor', '=', row.actorId).executeTakeFirst()
    return fleet && {kind: 'application', actorId: row.actorId, applicationId: fleet.id, slug: fleet.slug}
  }

  const device = await db.selectFrom('device').select(['id', 'uuid', 'belongs_to__application']).where('actor', '=', row.actorId).executeTakeFirst()
  return device && {kind: 'device', actorId: row.actorId, deviceId: device.id, uuid: device.uuid, applicationId: device.belongs_to__application, keyId: row.keyId}
}

/** The actor a credential stands for, or undefined when it is unknown, expired, revoked or its owner is gone. */
export async function resolveActor(db: Db, secret: Uint8Array, credential: string): Promise<Actor | undefined> {
  if (looksLikeJwt(credential)) return actorOfSession(db, secret, credential)
  return (await resolveApiKey(db, credential))?.actor
}
