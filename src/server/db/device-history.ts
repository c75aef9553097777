import type {Kysely} from 'kysely'

import type {Database} from './schema.js'
import {now} from './values.js'

/** The device fields whose changes open a new period of its history, as balena tracks them. */
const TRACKED = ['belongs_to__application', 'is_of__device_type', 'is_active', 'is_running__release', 'is_pinned_on__release', 'os_version', 'os_variant', 'supervisor_version'] as const

/** Booleans read back as true/false from PostgreSQL and as 1/0 from SQLite. */
const sameValue = (stored: unknown, current: unknown) => (typeof stored === 'boolean' ? Number(stored) : stored) === current

/**
 * Brings each device's history up to date: when a tracked field differs from the open period (or there is none),
 * ends that period and opens one with the device's fields now. Idempotent, so any write may call it.
 * `actorId` is who made the change (null when the server did).
 */
export async function recordDeviceHistory(db: Kysely<Database>, deviceIds: number[], actorId: number | null): Promise<void> {
  if (deviceIds.length === 0) return
  const devices = await db.selectFrom('device').select(['id', 'uuid', 'actor', ...TRACKED]).where('id', 'in', deviceIds).execute()
  for (const device of devices) {
    const open = await db.selectFrom('device_history').selectAll().where('tracks__device', '=', device.id).where('end_timestamp', 'is', null).orderBy('id', 'desc').executeTakeFirst()
    const period = {
      belongs_to__application: device.belongs_to__application,
      is_of__device_type: device.is_of__device_type,
      is_active: Number(device.is_active),
      is_running__release: device.is_running__release,
      should_be_running__release: device.is_pinned_on__release,
      os_version: device.os_version,
      os_variant: device.os_variant,
      supervisor_version: device.supervisor_version,
    }
    if (open && Object.entries(period).every(([name, value]) => sameValue(open[name as keyof typeof period], value))) continue
    const stamp = now()
    if (open) await db.updateTable('device_history').set({end_timestamp: stamp, is_ended_by__actor: actorId}).where('id', '=', open.id).execute()
    await db
      .insertInto('device_history')
      .values({...period, created_at: stamp, end_timestamp: null, is_created_by__actor: actorId, is_ended_by__actor: null, tracks__device: device.id, tracks__actor: device.actor, uuid: device.uuid})
      .execute()
  }
}
