import {type Kysely, sql} from 'kysely'

import {now} from './values.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- called with the server's database or a write transaction */

/**
 * balena keeps a `service_install` row for each device × service it should run, created by the API (never by
 * clients) when a device is created or moves fleet and when services appear; device-service variables hang off
 * it. flotilla keeps one for every service of the device's fleet, so a device-service variable can be set as soon
 * as the service exists. Both functions are idempotent and run inside the caller's transaction.
 */
export type ServiceInstallScope = {deviceIds: number[]} | {serviceIds: number[]}

/** Creates the missing installs of these devices (for every service of their fleets) or of these services (on every device of their fleet). */
export async function ensureServiceInstalls(db: Kysely<any>, scope: ServiceInstallScope): Promise<void> {
  const ids = 'deviceIds' in scope ? scope.deviceIds : scope.serviceIds
  if (ids.length === 0) return
  const column = 'deviceIds' in scope ? 'device.id' : 'service.id'
  await db
    .insertInto('service_install')
    .columns(['created_at', 'device', 'installs__service'])
    .expression(
      db
        .selectFrom('device')
        .innerJoin('service', 'service.application', 'device.belongs_to__application')
        .select([sql<string>`${now()}`.as('created_at'), 'device.id as device', 'service.id as installs__service'])
        .where(column, 'in', ids)
        .where(({exists, not, selectFrom}) =>
          not(
            exists(
              selectFrom('service_install as existing')
                .select('existing.id')
                .whereRef('existing.device', '=', 'device.id')
                .whereRef('existing.installs__service', '=', 'service.id'),
            ),
          ),
        ),
    )
    .execute()
}

/**
 * Brings the installs of devices that may have changed fleet in line: the old fleet's installs go (with their
 * device-service variables, as balena deletes them on a move) and the new fleet's are created.
 */
export async function syncDeviceServiceInstalls(db: Kysely<any>, deviceIds: number[]): Promise<void> {
  if (deviceIds.length === 0) return
  await db
    .deleteFrom('service_install')
    .where('device', 'in', deviceIds)
    .where(({exists, not, selectFrom}) =>
      not(
        exists(
          selectFrom('service as installed')
            .innerJoin('device as owner', 'owner.belongs_to__application', 'installed.application')
            .select('installed.id')
            .whereRef('installed.id', '=', 'service_install.installs__service')
            .whereRef('owner.id', '=', 'service_install.device'),
        ),
      ),
    )
    .execute()
  await ensureServiceInstalls(db, {deviceIds})
}
