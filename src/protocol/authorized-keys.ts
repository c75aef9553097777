import {timingSafeEqual} from 'node:crypto'

import ssh2 from 'ssh2'
import type {ParsedKey} from 'ssh2'

/** What an SSH client offers in a publickey login: the key, and a signature once it proves it holds the private half. */
export interface OfferedKey {
  key: {algo: string; data: Buffer}
  signature?: Buffer
  blob?: Buffer
  hashAlgo?: string
}

/**
 * The keys of OpenSSH authorized_keys lines (config.json's `os.sshKeys`). A line with options (`from="…" ssh-ed25519 …`)
 * is left out rather than read without them: this service cannot honour the restrictions they place.
 */
export function parseAuthorizedKeys(lines: readonly string[]): ParsedKey[] {
  const keys: ParsedKey[] = []
  for (const line of lines) {
    const trimmed = line.trim()
    if (!trimmed || trimmed.startsWith('#')) continue
    const parsed = ssh2.utils.parseKey(trimmed)
    if (parsed instanceof Error) continue
    keys.push(...(Array.isArray(parsed) ? parsed : [parsed]).filter((key) => !key.isPrivateKey()))
  }

  return keys
}

/**
 * Whether the offered key is one of the authorized keys and, when the client signed, whether the signature is good.
 * The key blob names the key type, so comparing blobs compares type and public data at once.
 */
export function isAuthorizedKey(keys: readonly ParsedKey[], offered: OfferedKey): boolean {
  const match = keys.find((key) => {
    const stored = key.getPublicSSH()
    return stored.length === offered.key.data.length && timingSafeEqual(stored, offered.key.data)
  })
  if (!match) return false
  if (!offered.signature) return true
  return match.verify(offered.blob ?? Buffer.alloc(0), offered.signature, offered.hashAlgo) === true
}
