import {sql} from 'kysely'

import {createApiKey} from '../auth/api-keys.js'
import type {Db} from './database.js'
import {recordDeviceHistory} from './device-history.js'
import {ensureServiceInstalls} from './service-installs.js'
import {now} from './values.js'

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

/** The actor of a device: what its device keys act as. Throws when there is no such device. */
export async function deviceActorOf(db: Db, deviceId: number): Promise<number> {
  const device = await db.selectFrom('device').select('actor').where('id', '=', deviceId).executeTakeFirstOrThrow()
  return device.actor
}

export interface NewDevice {
  uuid: string
  deviceTypeId: number
  fleetId: number
  /** What the device says of itself when it registers. */
  reported: {os_version: string | null; os_variant: string | null; supervisor_version: string | null; mac_address: string | null}
  /** The device's own key, when it brings one; else a new one. */
  apiKey?: string
  /** Who registered it, for the device's history. */
  registeredBy: number
}

/**
 * Registers a device in one transaction: its actor, its row (named after its uuid, offline until it reports), its
 * service installs, the first period of its history and its device key, which it returns.
 */
export function registerDevice(db: Db, device: NewDevice): Promise<{id: number; uuid: string; api_key: string}> {
  return db.transaction().execute(async (trx) => {
    const actor = await trx.insertInto('actor').values({kind: 'device'}).returning('id').executeTakeFirstOrThrow()
    const created = await trx
      .insertInto('device')
      .values({
        created_at: now(),
        uuid: device.uuid,
        device_name: device.uuid.slice(0, 7),
        is_of__device_type: device.deviceTypeId,
        belongs_to__application: device.fleetId,
        actor: actor.id,
        is_online: 0,
        api_heartbeat_state: 'unknown',
        is_undervolted: 0,
        is_web_accessible: 0,
        ...device.reported,
      })
      .returning('id')
      .executeTakeFirstOrThrow()
    await ensureServiceInstalls(trx, {deviceIds: [created.id]})
    await recordDeviceHistory(trx, [created.id], device.registeredBy)
    const apiKey = await createApiKey(trx, {actorId: actor.id, kind: 'device-api-key', key: device.apiKey, name: 'device key'})
    return {id: created.id, uuid: device.uuid, api_key: apiKey}
  })
}

/** Which online devices: one by uuid (any case) or id, or every one of a fleet. */
export type OnlineDeviceSelector = {uuid: string} | {deviceId: number} | {fleetId: number}

/** The online devices a selector names, with their fleet. */
export function onlineDevices(db: Db, selector: OnlineDeviceSelector): Promise<Array<{id: number; belongs_to__application: number}>> {
  let query = db.selectFrom('device').select(['id', 'belongs_to__application']).where('is_online', '=', 1)
  if ('uuid' in selector) query = query.where('uuid', '=', selector.uuid.toLowerCase())
  else if ('deviceId' in selector) query = query.where('id', '=', selector.deviceId)
  else query = query.where('belongs_to__application', '=', selector.fleetId)
  return query.execute()
}

/** What a device last reported of itself, and the commit of the release it said it runs. Throws when there is no such device. */
export function deviceStatusOf(db: Db, deviceId: number) {
  return db
    .selectFrom('device')
    .leftJoin('release', 'release.id', 'device.is_running__release')
    .select(['device.api_port', 'device.ip_address', 'device.mac_address', 'device.os_version', 'device.supervisor_version', 'device.status', 'device.update_status', 'device.download_progress', 'release.commit'])
    .where('device.id', '=', deviceId)
    .executeTakeFirstOrThrow()
}

/** The fleet of a device. Throws when there is no such device. */
export async function fleetIdOfDevice(db: Db, deviceId: number): Promise<number> {
  const device = await db.selectFrom('device').select('belongs_to__application').where('id', '=', deviceId).executeTakeFirstOrThrow()
  return device.belongs_to__application
}

/** What a device's state report says of one image it runs or is fetching. */
export interface ReportedImageInstall {
  imageId: number
  releaseId: number
  status: string
  progress: number | null
}

/**
 * Writes a device's state report in one transaction: the device's own fields, its image installs (made or
 * updated) and its history, stamped `stamp`.
 */
export async function recordStateReport(db: Db, deviceId: number, report: {fields: Record<string, string | number | null>; installs: ReportedImageInstall[]; stamp: string}): Promise<void> {
  const {stamp} = report
  await db.transaction().execute(async (trx) => {
    await trx.updateTable('device').set(report.fields).where('id', '=', deviceId).execute()
    for (const install of report.installs) {
      await trx
        .insertInto('image_install')
        .values({created_at: stamp, device: deviceId, installs__image: install.imageId, install_date: stamp, status: install.status, download_progress: install.progress, is_provided_by__release: install.releaseId})
        .onConflict((conflict) =>
          conflict.columns(['device', 'installs__image']).doUpdateSet({status: install.status, download_progress: install.progress, is_provided_by__release: install.releaseId}),
        )
        .execute()
    }

    await recordDeviceHistory(trx, [deviceId], null)
  })
}
