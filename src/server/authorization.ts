import {type RawBuilder, sql} from 'kysely'

import type {Actor} from './auth/actor.js'
import type {Db} from './db/database.js'
import {toDatabaseParameter} from './db/values.js'
import {unauthorized} from './http-errors.js'
import {RESOURCES, type ResourceSpec} from './odata/model.js'

/**
 * Who may see and change what: the one place that decides. Every pine query (its rows, every $expand, every
 * navigation path and any/all in a filter) is restricted by `visibleRows`, and every write by `assertMayWrite`
 * before it and `visibleRows` after it. Other routes ask `mayAccess*` below, which run the same conditions.
 */

type Condition = RawBuilder<unknown>

const ALWAYS = sql<unknown>`1 = 1`
const NEVER = sql<unknown>`1 = 0`

function inSet(alias: string, column: string, set: Condition): Condition {
  return sql`${sql.ref(`${alias}.${column}`)} in (${set})`
}

function equals(alias: string, column: string, value: number): Condition {
  return sql`${sql.ref(`${alias}.${column}`)} = ${value}`
}

/** The id sets a user reaches through their organizations, as subqueries. */
function userSets(userId: number) {
  const organizations = sql`select scope_membership.is_member_of__organization from organization_membership as scope_membership where scope_membership."user" = ${userId}`
  const applications = sql`select scope_fleet.id from application as scope_fleet where scope_fleet.organization in (${organizations})`
  const devices = sql`select scope_device.id from device as scope_device where scope_device.belongs_to__application in (${applications})`
  const releases = sql`select scope_release.id from release as scope_release where scope_release.belongs_to__application in (${applications})`
  const services = sql`select scope_service.id from service as scope_service where scope_service.application in (${applications})`
  const serviceInstalls = sql`select scope_install.id from service_install as scope_install where scope_install.device in (${devices})`
  const users = sql`select scope_comember."user" from organization_membership as scope_comember where scope_comember.is_member_of__organization in (${organizations})`
  return {organizations, applications, devices, releases, services, serviceInstalls, users}
}

function fleetSets(applicationId: number) {
  const releases = sql`select scope_release.id from release as scope_release where scope_release.belongs_to__application = ${applicationId}`
  const services = sql`select scope_service.id from service as scope_service where scope_service.application = ${applicationId}`
  return {releases, services}
}

export const PUBLIC_RESOURCES = new Set(['cpu_architecture', 'device_type', 'device_type_alias', 'application_type'])

/**
 * What a row is looked at for: `read` is a pine GET, which also shows the public rows every actor (guests too)
 * may read — the hostApp fleets of the OS images and their releases; `manage` is anything else (writes, and
 * routes acting on a fleet or device), which only reaches the actor's own rows.
 */
export type RowAccess = 'read' | 'manage'

/** Resources with public rows that guests may ask pine for (rows filtered by `publicRows`). */
export const GUEST_READABLE_RESOURCES = new Set([...PUBLIC_RESOURCES, 'application', 'release'])

const publicHostApps = sql`select public_app.id from application as public_app where public_app.is_host = ${toDatabaseParameter(true)} and public_app.is_public = ${toDatabaseParameter(true)}`

/** Rows anyone may read: OS images published as public hostApp fleets, and their releases. */
function publicRows(resource: string, alias: string): Condition | undefined {
  if (resource === 'application') return inSet(alias, 'id', publicHostApps)
  if (resource === 'release') return inSet(alias, 'belongs_to__application', publicHostApps)
  return undefined
}

function userScope(actor: Extract<Actor, {kind: 'user'}>, resource: string, alias: string): Condition {
  const sets = userSets(actor.userId)
  switch (resource) {
    case 'actor': {
      return sql`(${equals(alias, 'id', actor.actorId)}
        or ${sql.ref(`${alias}.id`)} in (select scope_a.actor from application as scope_a where scope_a.id in (${sets.applications}))
        or ${sql.ref(`${alias}.id`)} in (select scope_d.actor from device as scope_d where scope_d.id in (${sets.devices}))
        or ${sql.ref(`${alias}.id`)} in (select scope_u.actor from "user" as scope_u where scope_u.id in (${sets.users})))`
    }

    case 'organization': {
      return inSet(alias, 'id', sets.organizations)
    }

    case 'organization_membership': {
      return inSet(alias, 'is_member_of__organization', sets.organizations)
    }

    case 'user': {
      return inSet(alias, 'id', sets.users)
    }

    case 'user__has__public_key': {
      return equals(alias, 'user', actor.userId)
    }

    case 'api_key': {
      // Their own keys, and the provisioning and device keys of the fleets and devices they reach, so members can
      // see and revoke them; the key itself is never a field.
      return sql`(${equals(alias, 'is_of__actor', actor.actorId)}
        or ${sql.ref(`${alias}.is_of__actor`)} in (select key_fleet.actor from application as key_fleet where key_fleet.id in (${sets.applications}))
        or ${sql.ref(`${alias}.is_of__actor`)} in (select key_device.actor from device as key_device where key_device.id in (${sets.devices})))`
    }

    case 'application': {
      return inSet(alias, 'organization', sets.organizations)
    }

    case 'device':
    case 'release': {
      return inSet(alias, 'belongs_to__application', sets.applications)
    }

    case 'service':
    case 'application_environment_variable':
    case 'application_config_variable':
    case 'application_tag': {
      return inSet(alias, 'application', sets.applications)
    }

    case 'device_environment_variable':
    case 'device_config_variable':
    case 'device_tag':
    case 'image_install':
    case 'service_install': {
      return inSet(alias, 'device', sets.devices)
    }

    case 'release_tag': {
      return inSet(alias, 'release', sets.releases)
    }

    case 'image': {
      return inSet(alias, 'is_a_build_of__service', sets.services)
    }

    case 'image__is_part_of__release': {
      return inSet(alias, 'is_part_of__release', sets.releases)
    }

    case 'device_history': {
      return inSet(alias, 'belongs_to__application', sets.applications)
    }

    case 'release_asset': {
      return inSet(alias, 'release', sets.releases)
    }

    case 'service_environment_variable': {
      return inSet(alias, 'service', sets.services)
    }

    case 'device_service_environment_variable': {
      return inSet(alias, 'service_install', sets.serviceInstalls)
    }

    default: {
      return NEVER
    }
  }
}

function deviceScope(actor: Extract<Actor, {kind: 'device'}>, resource: string, alias: string): Condition {
  const sets = fleetSets(actor.applicationId)
  switch (resource) {
    case 'actor': {
      return equals(alias, 'id', actor.actorId)
    }

    case 'device': {
      return equals(alias, 'id', actor.deviceId)
    }

    case 'application': {
      return equals(alias, 'id', actor.applicationId)
    }

    case 'device_environment_variable':
    case 'device_config_variable':
    case 'device_tag':
    case 'image_install':
    case 'service_install': {
      return equals(alias, 'device', actor.deviceId)
    }

    case 'service':
    case 'application_environment_variable':
    case 'application_config_variable':
    case 'application_tag': {
      return equals(alias, 'application', actor.applicationId)
    }

    case 'release': {
      return equals(alias, 'belongs_to__application', actor.applicationId)
    }

    case 'release_tag': {
      return inSet(alias, 'release', sets.releases)
    }

    case 'image': {
      return inSet(alias, 'is_a_build_of__service', sets.services)
    }

    case 'image__is_part_of__release': {
      return inSet(alias, 'is_part_of__release', sets.releases)
    }

    case 'service_environment_variable': {
      return inSet(alias, 'service', sets.services)
    }

    case 'device_service_environment_variable': {
      return inSet(alias, 'service_install', sql`select own_install.id from service_install as own_install where own_install.device = ${actor.deviceId}`)
    }

    default: {
      return NEVER
    }
  }
}

/** The SQL condition a row of `resource` (under `alias`) must meet for the actor to see it (`read`) or act on it (`manage`). */
export function visibleRows(actor: Actor, resource: ResourceSpec, alias: string, access: RowAccess = 'manage'): Condition {
  if (PUBLIC_RESOURCES.has(resource.name)) return ALWAYS
  const own = ownRows(actor, resource, alias)
  const open = access === 'read' ? publicRows(resource.name, alias) : undefined
  return open ? sql`(${own} or ${open})` : own
}

function ownRows(actor: Actor, resource: ResourceSpec, alias: string): Condition {
  switch (actor.kind) {
    case 'user': {
      return userScope(actor, resource.name, alias)
    }

    case 'device': {
      return deviceScope(actor, resource.name, alias)
    }

    case 'application': {
      if (resource.name === 'application') return equals(alias, 'id', actor.applicationId)
      if (resource.name === 'actor') return equals(alias, 'id', actor.actorId)
      return NEVER
    }

    case 'guest': {
      return NEVER
    }
  }
}

export type WriteMethod = 'POST' | 'PATCH' | 'DELETE'

/** Resources users create and change through pine; the rest are read-only or have routes of their own. */
const USER_WRITABLE = new Set([
  'application',
  'device',
  'application_environment_variable',
  'application_config_variable',
  'device_environment_variable',
  'device_config_variable',
  'service_environment_variable',
  'device_service_environment_variable',
  'application_tag',
  'device_tag',
  'release_tag',
  'user__has__public_key',
  'release',
  'service',
  'image',
  'image__is_part_of__release',
  'release_asset',
])

/** Fields a device may not change on itself: where it belongs and what it is pinned to are its owners' decisions. */
const OWNER_ONLY_DEVICE_FIELDS = new Set(['belongs_to__application', 'is_pinned_on__release', 'belongs_to__user', 'note', 'device_name'])

/**
 * Refuses (401, as balena does) a write the actor may never make to this resource, whatever the rows.
 * Which rows it may touch is then decided by `visibleRows`.
 */
export function assertMayWrite(actor: Actor, resource: ResourceSpec, method: WriteMethod, body: Record<string, unknown> = {}): void {
  if (actor.kind === 'user') {
    // Only the server publishes hostApp and public fleets (the OS images); a user's fleet never becomes one.
    if (resource.name === 'application' && (body.is_host === true || body.is_public === true)) throw unauthorized()
    if (USER_WRITABLE.has(resource.name)) return
    if (resource.name === 'api_key' && method !== 'POST') return
    throw unauthorized()
  }

  if (actor.kind === 'device' && resource.name === 'device' && method === 'PATCH') {
    if (Object.keys(body).some((field) => OWNER_ONLY_DEVICE_FIELDS.has(field))) throw unauthorized()
    return
  }

  throw unauthorized()
}

/**
 * What can be done to a device through its own endpoints: what a device does (fetch its target, report its
 * state, send its logs) and what its owners do (read its target and logs, send it actions, open a shell or a
 * tunnel to it).
 */
export type DeviceAccess = 'read-target' | 'report-state' | 'write-logs' | 'read-logs' | 'send-action' | 'connect' | 'create-key'

/** `create-key` is a rotation: a device may make itself a new key, as may its owners. */
const DEVICE_KEY_ACCESS = new Set<DeviceAccess>(['read-target', 'report-state', 'write-logs', 'create-key'])
const USER_ACCESS = new Set<DeviceAccess>(['read-target', 'read-logs', 'send-action', 'connect', 'create-key'])

/**
 * Whether the actor may do this to the device: its own device key, or a user who sees the device. A provisioning
 * key may do nothing to a device, not even give it a key: as in balena, it may only register new devices, whose
 * first key comes with the registration (a key it set for an existing device would take that device over).
 */
export async function mayAccessDevice(db: Db, actor: Actor, deviceId: number, access: DeviceAccess): Promise<boolean> {
  if (actor.kind === 'device') return actor.deviceId === deviceId && DEVICE_KEY_ACCESS.has(access)
  if (actor.kind !== 'user' || !USER_ACCESS.has(access)) return false
  const alias = 'checked_device'
  const row = await db
    .selectFrom(`device as ${alias}`)
    .select(`${alias}.id`)
    .where(`${alias}.id`, '=', deviceId)
    .where(sql<boolean>`${visibleRows(actor, RESOURCES.device, alias)}`)
    .executeTakeFirst()
  return row !== undefined
}
