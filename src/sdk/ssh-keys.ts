import {UsageError} from '../errors.js'
import type {FleetClient} from './client.js'
import {whoami} from './auth.js'

export interface SshKey {
  id: number
  title: string
  public_key: string
  created_at: string
}

const KEY_TYPES = /^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z\d+/]+={0,3}( .*)?$/

/** Accepts one OpenSSH public key line; a private key or anything else is refused before it leaves the machine. */
export function parsePublicKey(text: string): string {
  const key = text.trim()
  if (key.includes('PRIVATE KEY')) throw new UsageError('that is a private key — give the public one (the .pub file)')
  if (key.split('\n').length !== 1 || !KEY_TYPES.test(key)) {
    throw new UsageError('not an OpenSSH public key — expected one line such as "ssh-ed25519 AAAA… comment"')
  }

  return key
}

export async function addSshKey(client: FleetClient, title: string, publicKey: string): Promise<SshKey> {
  if (title.trim() === '') throw new UsageError('an SSH key needs a name')
  const actor = await whoami(client)
  if (actor.actorType !== 'user') throw new UsageError('SSH keys belong to users: log in as a user to add one')
  return client.pine.post<SshKey>('user__has__public_key', {user: actor.actorTypeId, title, public_key: parsePublicKey(publicKey)})
}

export async function listSshKeys(client: FleetClient): Promise<SshKey[]> {
  const actor = await whoami(client)
  return client.pine.get<SshKey>('user__has__public_key', {
    $select: ['id', 'title', 'public_key', 'created_at'],
    $filter: `user eq ${actor.actorTypeId}`,
    $orderby: 'id asc',
  })
}

export async function removeSshKey(client: FleetClient, id: number): Promise<boolean> {
  const existing = (await listSshKeys(client)).some((key) => key.id === id)
  if (existing) await client.pine.delete('user__has__public_key', id)
  return existing
}
