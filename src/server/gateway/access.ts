import type {Actor} from '../auth/actor.js'
import {mayAccessDevice} from '../authorization.js'
import type {Db} from '../db/database.js'
import {devicesByUuidPrefix} from '../db/devices.js'

/** The device a user may reach (shell, tunnel), named by its uuid or a unique prefix of it. */
export type ReachableDevice = {id: number; uuid: string} | {error: string}

export async function reachableDevice(db: Db, actor: Actor, uuidOrPrefix: string): Promise<ReachableDevice> {
  const short = uuidOrPrefix.slice(0, 7)
  const candidates = []
  for (const device of await devicesByUuidPrefix(db, uuidOrPrefix, 50)) {
    if (await mayAccessDevice(db, actor, device.id, 'connect')) candidates.push(device)
  }

  // A device the user may not reach reads exactly like one that does not exist.
  if (candidates.length === 0) return {error: `no device ${short} that you can access`}
  if (candidates.length > 1) return {error: `${uuidOrPrefix} names more than one device: give more of the uuid`}
  return candidates[0]
}
