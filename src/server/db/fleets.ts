import {sql} from 'kysely'

import type {Actor} from '../auth/actor.js'
import {visibleRows} from '../authorization.js'
import {RESOURCES} from '../odata/model.js'
import type {Db} from './database.js'

/** The actor of a fleet: what its provisioning keys act as. Throws when there is no such fleet. */
export async function fleetActorOf(db: Db, fleetId: number): Promise<number> {
  const fleet = await db.selectFrom('application').select('actor').where('id', '=', fleetId).executeTakeFirstOrThrow()
  return fleet.actor
}

/** A fleet's actor and the slug of its device type. Throws when there is no such fleet. */
export function fleetActorAndDeviceType(db: Db, fleetId: number): Promise<{actor: number; deviceType: string}> {
  return db
    .selectFrom('application')
    .innerJoin('device_type', 'device_type.id', 'application.is_for__device_type')
    .select(['application.actor', 'device_type.slug as deviceType'])
    .where('application.id', '=', fleetId)
    .executeTakeFirstOrThrow()
}

/** Which of these fleets still exist. */
export async function existingFleetIds(db: Db, fleetIds: number[]): Promise<Set<number>> {
  const existing = new Set<number>()
  // In slices, under either database's limit of bound parameters.
  for (let start = 0; start < fleetIds.length; start += 1000) {
    const rows = await db.selectFrom('application').select('id').where('id', 'in', fleetIds.slice(start, start + 1000)).execute()
    for (const row of rows) existing.add(row.id)
  }

  return existing
}

/** A fleet by slug (any case) with what its builds are for: its device type and that type's CPU architecture. */
export function fleetPlatformBySlug(db: Db, slug: string): Promise<{id: number; slug: string; deviceType: string; arch: string} | undefined> {
  return db
    .selectFrom('application')
    .innerJoin('device_type', 'device_type.id', 'application.is_for__device_type')
    .innerJoin('cpu_architecture', 'cpu_architecture.id', 'device_type.is_of__cpu_architecture')
    .select(['application.id', 'application.slug', 'device_type.slug as deviceType', 'cpu_architecture.slug as arch'])
    .where('application.slug', '=', slug.toLowerCase())
    .executeTakeFirst()
}

/** Whether the user is a member of the organization that owns the fleet. */
export async function isFleetMember(db: Db, fleetId: number, userId: number): Promise<boolean> {
  const member = await db
    .selectFrom('application')
    .innerJoin('organization_membership as membership', 'membership.is_member_of__organization', 'application.organization')
    .select('application.id')
    .where('application.id', '=', fleetId)
    .where('membership.user', '=', userId)
    .executeTakeFirst()
  return member !== undefined
}

/** The id of the fleet with this uuid (any case) when the actor may manage it (authorization.ts), else undefined. */
export async function managedFleetIdOfUuid(db: Db, actor: Actor, uuid: string): Promise<number | undefined> {
  const fleet = await db
    .selectFrom('application as fleet')
    .select('fleet.id')
    .where('fleet.uuid', '=', uuid.toLowerCase())
    .where(sql<boolean>`${visibleRows(actor, RESOURCES.application, 'fleet')}`)
    .executeTakeFirst()
  return fleet?.id
}
