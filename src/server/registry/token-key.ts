import {execFile} from 'node:child_process'
import {createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject} from 'node:crypto'
import path from 'node:path'
import {promisify} from 'node:util'

import {readTextIfPresent, writeFileAtomic} from '../../atomic-file.js'
import {ExpectedError} from '../../errors.js'
import type {Db} from '../db/database.js'
import {sharedSecret} from '../db/server-secrets.js'

/** In the data dir: the key registry tokens are signed with, and the certificate registries trust them by. */
export const REGISTRY_KEY_FILE = 'registry-token.key'
export const REGISTRY_CERTIFICATE_FILE = 'registry-token.crt'

export interface RegistryTokenKey {
  privateKey: KeyObject
  /** The registry finds the certificate of a token's key by this id (the `kid` header), as libtrust names keys. */
  keyId: string
  /** The PEM file a registry's `auth.token.rootcertbundle` names; absent for a server without a data dir. */
  certificateFile?: string
}

const run = promisify(execFile)

const BASE32_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

function base32(bytes: Uint8Array): string {
  let bits = 0
  let value = 0
  let text = ''
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      text += BASE32_ALPHABET[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }

  return bits > 0 ? text + BASE32_ALPHABET[(value << (5 - bits)) & 31] : text
}

/**
 * The id the Docker registry (libtrust) gives a public key: the first 240 bits of the SHA-256 of its DER
 * SubjectPublicKeyInfo, base32 without padding, in groups of four joined by colons.
 */
export function libtrustKeyId(privateKey: KeyObject): string {
  const digest = createHash('sha256').update(createPublicKey(privateKey).export({type: 'spki', format: 'der'})).digest().subarray(0, 30)
  return base32(digest).match(/.{1,4}/g)!.join(':')
}

/**
 * A self-signed certificate of the key, made by openssl (node can read X.509 but not write it): registries trust
 * the key through it, and nothing else uses it, so it is valid for ten years.
 */
async function selfSignedCertificate(keyFile: string): Promise<string> {
  try {
    const {stdout} = await run('openssl', ['req', '-x509', '-new', '-key', keyFile, '-subj', '/CN=flotilla registry tokens', '-days', '3650', '-sha256'])
    return stdout
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ExpectedError("openssl is needed to make the certificate registries trust this server's tokens by — install it (apt-get install openssl), or start with --no-registry")
    }

    throw new ExpectedError(`openssl could not make the registry token certificate: ${(error as {stderr?: string}).stderr?.trim() || (error as Error).message}`)
  }
}

function isUsableKey(pem: string): boolean {
  try {
    createPrivateKey(pem)
    return true
  } catch {
    return false
  }
}

const newTokenKeyPem = () => generateKeyPairSync('ec', {namedCurve: 'P-256'}).privateKey.export({type: 'pkcs8', format: 'pem'}) as string

/**
 * The server's registry token key (ES256 on P-256), the same on every instance on the database: made on first start,
 * or taken from the data dir where an older server kept it. With a data dir, the key and its certificate are also
 * written there (0600) for registries to trust (`auth.token.rootcertbundle`); the certificate is made again
 * whenever the key in the file changes, since one left from another key would make registries refuse every token.
 */
export async function loadRegistryTokenKey(db: Db, dataDir: string | undefined): Promise<RegistryTokenKey> {
  const keyFile = dataDir && path.join(dataDir, REGISTRY_KEY_FILE)
  const fileKey = await readTextIfPresent(keyFile)
  const keyPem = await sharedSecret(db, 'registry-token-key', () => (fileKey && isUsableKey(fileKey) ? fileKey : newTokenKeyPem()), isUsableKey)
  const privateKey = createPrivateKey(keyPem)
  if (!dataDir || !keyFile) return {privateKey, keyId: libtrustKeyId(privateKey)}

  const certificateFile = path.join(dataDir, REGISTRY_CERTIFICATE_FILE)
  if (fileKey !== keyPem) await writeFileAtomic(keyFile, keyPem, 0o600)
  if (fileKey !== keyPem || (await readTextIfPresent(certificateFile)) === undefined) await writeFileAtomic(certificateFile, await selfSignedCertificate(keyFile), 0o600)
  return {privateKey, keyId: libtrustKeyId(privateKey), certificateFile}
}
