import {sql} from 'kysely'

import type {Db} from './database.js'

/** The id of the device with this uuid (any case), or undefined. */
export async function deviceIdOfUuid(db: Db, uuid: string): Promise<number | undefined> {
  const row = await db.selectFrom('device').select('id').where('uuid', '=', uuid.toLowerCase()).executeTakeFirst()
  return row?.id
}

/** The ids and full uuids of the devices whose uuid starts with `prefix` (any case), at most `limit`. */
export async function devicesByUuidPrefix(db: Db, prefix: string, limit = 2): Promise<Array<{id: number; uuid: string}>> {
  const escaped = prefix.toLowerCase().replaceAll(/[%_\\]/g, String.raw`\$&`)
  return db.selectFrom('device').select(['id', 'uuid']).where(sql<boolean>`uuid like ${`${escaped}%`} escape '\\'`).limit(limit).execute()
}

/**
 * Marks offline every device said to be online whose last connectivity event is older than `timeoutMs`: a
 * device proves it is alive by reporting its state, so silence for long enough means it is gone.
 */
export async function markSilentDevicesOffline(db: Db, timeoutMs: number, options: {now?: number; exceptIds?: number[]} = {}): Promise<number> {
  const now = options.now ?? Date.now()
  const cutoff = new Date(now - timeoutMs).toISOString()
  const result = await db
    .updateTable('device')
    .set({is_online: 0, api_heartbeat_state: 'offline', last_connectivity_event: new Date(now).toISOString()})
    .where('is_online', '=', 1)
    .where((eb) => eb.or([eb('last_connectivity_event', 'is', null), eb('last_connectivity_event', '<', cutoff)]))
    .$if((options.exceptIds?.length ?? 0) > 0, (query) => query.where('id', 'not in', options.exceptIds ?? []))
    .executeTakeFirst()
  return Number(result.numUpdatedRows)
}
