import ssh2 from 'ssh2'

import {readTextIfPresent, writeFileAtomic} from '../atomic-file.js'

/**
 * A new ed25519 host key that ssh2 can parse: about one key in 256 it generates has a public key starting with
 * a zero byte, which it strips and then rejects as malformed (mscdex/ssh2#1390), so such a key is drawn again.
 */
export function generateHostKey(generate = () => ssh2.utils.generateKeyPairSync('ed25519').private): string {
  for (let attempt = 1; ; attempt++) {
    const privateKey = generate()
    if (!(ssh2.utils.parseKey(privateKey) instanceof Error)) return privateKey
    if (attempt === 20) throw new Error('could not generate an SSH host key that ssh2 can read')
  }
}

/** Whether ssh2 can read a stored host key: one it cannot was never usable. */
export function isUsableHostKey(privateKey: string): boolean {
  return !(ssh2.utils.parseKey(privateKey) instanceof Error)
}

/**
 * An SSH server's host key, kept in `file` (mode 0600) so clients that pinned it keep trusting it; made on first
 * use, and in memory only without a file. A stored key ssh2 cannot read was never usable: it is replaced.
 */
export async function loadHostKey(file: string | undefined): Promise<string> {
  const existing = await readTextIfPresent(file)
  if (existing && isUsableHostKey(existing)) return existing
  const privateKey = generateHostKey()
  if (file) await writeFileAtomic(file, privateKey, 0o600)
  return privateKey
}

/** The public half of a host key as an OpenSSH line (`ssh-ed25519 AAAA…`). */
export function publicHostKeyOf(privateKey: string): string {
  const parsed = ssh2.utils.parseKey(privateKey)
  if (parsed instanceof Error) throw parsed
  return `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`
}
