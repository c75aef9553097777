import {randomBytes} from 'node:crypto'
import path from 'node:path'

import {jwtVerify, SignJWT} from 'jose'

import {readTextIfPresent} from '../../atomic-file.js'
import type {Db} from '../db/database.js'
import {sharedSecret} from '../db/server-secrets.js'

export const SESSION_LIFETIME_SECONDS = 7 * 24 * 3600
/** Where servers before the secrets moved into the database kept the signing secret. */
const LEGACY_SECRET_FILE = 'jwt-secret'

export interface SessionClaims {
  id: number
  jwt_secret: string
  /** When the user last typed their password (ms): refreshing keeps it, so key creation can ask for a fresh login. */
  authTime: number
}

const SIGNING_SECRET_BYTES = 32

const isSigningSecret = (text: string) => Buffer.from(text.trim(), 'base64').length >= SIGNING_SECRET_BYTES

/**
 * The key sessions are signed with, shared by every instance on the database: made on first start, or taken from
 * the data dir's file where an older server kept it, so its sessions stay valid.
 */
export async function loadSigningSecret(db: Db, dataDir: string | undefined): Promise<Uint8Array> {
  const text = await sharedSecret(
    db,
    'session-signing',
    async () => {
      const legacy = await readTextIfPresent(dataDir && path.join(dataDir, LEGACY_SECRET_FILE))
      return legacy && isSigningSecret(legacy) ? legacy.trim() : randomBytes(SIGNING_SECRET_BYTES).toString('base64')
    },
    isSigningSecret,
  )
  return Buffer.from(text.trim(), 'base64')
}

export async function signSession(secret: Uint8Array, claims: SessionClaims): Promise<string> {
  return new SignJWT({...claims})
    .setProtectedHeader({alg: 'HS256', typ: 'JWT'})
    .setIssuedAt()
    .setExpirationTime(`${SESSION_LIFETIME_SECONDS}s`)
    .sign(secret)
}

/** The claims of a valid, unexpired session token, or undefined. */
export async function verifySession(secret: Uint8Array, token: string): Promise<SessionClaims | undefined> {
  try {
    const {payload} = await jwtVerify(token, secret, {algorithms: ['HS256']})
    if (typeof payload.id !== 'number' || typeof payload.jwt_secret !== 'string') return undefined
    return {id: payload.id, jwt_secret: payload.jwt_secret, authTime: typeof payload.authTime === 'number' ? payload.authTime : 0}
  } catch {
    return undefined
  }
}

/** A JWT has three base64url parts; anything else is looked up as an API key. */
export function looksLikeJwt(token: string): boolean {
  return /^[\w-]+\.[\w-]+\.[\w-]*$/.test(token)
}
