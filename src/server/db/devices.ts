import type {Db} from './database.js'

/** The id of the device with this uuid (any case), or undefined. */
export async function deviceIdOfUuid(db: Db, uuid: string): Promise<number | undefined> {
  const row = await db.selectFrom('device').select('id').where('uuid', '=', uuid.toLowerCase()).executeTakeFirst()
  return row?.id
}

/**
 * Marks offline every device said to be online whose last connectivity event is older than `timeoutMs`: a
 * device proves it is alive by reporting its state, so silence for long enough means it is gone.
 */
export async function markSilentDevicesOffline(db: Db, timeoutMs: number, now = Date.now()): Promise<number> {
  const cutoff = new Date(now - timeoutMs).toISOString()
  const result = await db
    .updateTable('device')
    .set({is_online: 0, api_heartbeat_state: 'offline', last_connectivity_event: new Date(now).toISOString()})
    .where('is_online', '=', 1)
    .where((eb) => eb.or([eb('last_connectivity_event', 'is', null), eb('last_connectivity_event', '<', cutoff)]))
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}
