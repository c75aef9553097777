import {hash} from 'node:crypto'

import type {Db} from '../db/database.js'
import type {ApiKeyKind} from '../db/schema.js'
import {now} from '../db/values.js'
import {badRequest} from '../http-errors.js'
import {randomAlphanumerics} from './passwords.js'

export const API_KEY_LENGTH = 32

/**
 * Keys are 32 random alphanumerics (190 bits), so one fast hash is enough to keep them unreadable at rest. Every
 * request of every device hashes its key: the one-shot hash costs a quarter of a Hash object's.
 */
export function hashApiKey(key: string): string {
  return hash('sha256', key, 'hex')
}

export interface NewApiKey {
  actorId: number
  kind: ApiKeyKind
  name?: string | null
  description?: string | null
  expiryDate?: string | null
  /** A key chosen by the client (devices may bring their own); generated when absent. */
  key?: string
}

function parseExpiry(value: string | null | undefined): string | null {
  if (value === null || value === undefined || value === '') return null
  const date = new Date(value)
  if (Number.isNaN(date.getTime())) throw badRequest('expiryDate must be an ISO date or null')
  return date.toISOString()
}

/** Stores a new key for an actor and returns the key itself: the only time it is ever readable. */
export async function createApiKey(db: Db, options: NewApiKey): Promise<string> {
  const key = options.key ?? randomAlphanumerics(API_KEY_LENGTH)
  if (key.length < 16) throw badRequest('an API key must be at least 16 characters long')
  await db
    .insertInto('api_key')
    .values({
      created_at: now(),
      key_hash: hashApiKey(key),
      kind: options.kind,
      name: options.name ?? null,
      description: options.description ?? null,
      expiry_date: parseExpiry(options.expiryDate),
      is_of__actor: options.actorId,
    })
    .execute()
  return key
}
