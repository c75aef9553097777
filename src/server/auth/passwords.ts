import {randomBytes, scrypt, type ScryptOptions, timingSafeEqual} from 'node:crypto'

const KEY_LENGTH = 64
const PARAMETERS = {N: 16_384, r: 8, p: 1}

function derive(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, KEY_LENGTH, options, (error, key) => (error ? reject(error) : resolve(key)))
  })
}

/** `scrypt$N$r$p$salt$hash` (base64): the parameters travel with the hash so they can be raised later. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await derive(password, salt, PARAMETERS)
  return ['scrypt', PARAMETERS.N, PARAMETERS.r, PARAMETERS.p, salt.toString('base64'), key.toString('base64')].join('$')
}

export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const parts = stored?.split('$') ?? []
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false
  const [, n, r, p, salt, hash] = parts
  const expected = Buffer.from(hash, 'base64')
  const key = await derive(password, Buffer.from(salt, 'base64'), {N: Number(n), r: Number(r), p: Number(p), maxmem: 64 * 1024 * 1024})
  return key.length === expected.length && timingSafeEqual(key, expected)
}

let dummyHash: Promise<string> | undefined

/**
 * Checks a password against a user's hash, or, when there is no such user, against a hash of nothing anyone
 * knows: either way one scrypt runs, so how long a login takes does not tell whether the user exists.
 */
export async function verifyLogin(password: string, stored: string | null | undefined): Promise<boolean> {
  if (stored) return verifyPassword(password, stored)
  dummyHash ??= hashPassword(randomAlphanumerics(32))
  await verifyPassword(password, await dummyHash)
  return false
}

const ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789'

/** A random password for people to copy: 20 characters without look-alikes. */
export function generatePassword(length = 20): string {
  return randomAlphanumerics(length, ALPHABET)
}

/** Uniformly random characters of an alphabet (rejection sampling, so no character is likelier than another). */
export function randomAlphanumerics(length: number, alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'): string {
  const limit = 256 - (256 % alphabet.length)
  let result = ''
  while (result.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit && result.length < length) result += alphabet[byte % alphabet.length]
    }
  }

  return result
}
