import {randomBytes} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import path from 'node:path'

import {jwtVerify, SignJWT} from 'jose'

import {writeFileAtomic} from '../../atomic-file.js'

export const SESSION_LIFETIME_SECONDS = 7 * 24 * 3600
const SECRET_FILE = 'jwt-secret'

export interface SessionClaims {
  id: number
  jwt_secret: string
  /** When the user last typed their password (ms): refreshing keeps it, so key creation can ask for a fresh login. */
  authTime: number
}

/** The key sessions are signed with, made on first start and kept (mode 0600) in the data dir. */
export async function loadSigningSecret(dataDir: string | undefined): Promise<Uint8Array> {
  if (!dataDir) return randomBytes(32)
  const file = path.join(dataDir, SECRET_FILE)
  try {
    return Buffer.from((await readFile(file, 'utf8')).trim(), 'base64')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
    const secret = randomBytes(32)
    await writeFileAtomic(file, secret.toString('base64') + '\n', 0o600)
    return secret
  }
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
