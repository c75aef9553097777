import {randomBytes} from 'node:crypto'

import type {Kysely} from 'kysely'

import type {Actor} from '../auth/actor.js'
import type {Db} from '../db/database.js'
import {recordDeviceHistory} from '../db/device-history.js'
import {ensureServiceInstalls, syncDeviceServiceInstalls} from '../db/service-installs.js'
import {now} from '../db/values.js'
import {badRequest, unauthorized} from '../http-errors.js'
import {ReleaseLifecycle} from '../releases/lifecycle.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rules see every table */
type Values = Record<string, unknown>

export interface WriteContext {
  trx: Kysely<any>
  actor: Actor
  /** `host:port` of the registry images are stored in, or null when there is none. */
  registry: string | null
}

/** What a resource does beyond storing the fields it was given: defaults, derived fields, validation. */
export interface ResourceRules {
  beforeCreate?(context: WriteContext, values: Values): Promise<void>
  beforeUpdate?(context: WriteContext, ids: number[], values: Values): Promise<void>
  /** `values` as written, defaults included. */
  afterWrite?(context: WriteContext, ids: number[], values: Values): Promise<void>
}

export const FLEET_NAME_PATTERN = /^[a-zA-Z0-9_-]+$/
export const ENV_VAR_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/
export const CONFIG_VAR_NAME_PATTERN = /^(BALENA|RESIN)_[A-Za-z0-9_]+$/
export const RESERVED_VAR_NAMES = ['RESIN', 'BALENA', 'RESIN_API_KEY', 'BALENA_API_KEY', 'USER']
const DEVICE_UUID_PATTERN = /^(?:[0-9a-f]{32}|[0-9a-f]{62})$/

export function newUuid(): string {
  return randomBytes(16).toString('hex')
}

function defaults(values: Values, fallbacks: Values): void {
  for (const [name, value] of Object.entries(fallbacks)) {
    if (values[name] === undefined) values[name] = value
  }
}

async function newActor(context: WriteContext, kind: 'application' | 'device'): Promise<number> {
  const actor = await context.trx.insertInto('actor').values({kind}).returning('id').executeTakeFirstOrThrow()
  return actor.id as number
}

async function slugFor(context: WriteContext, organizationId: unknown, appName: string): Promise<string> {
  const organization = await context.trx.selectFrom('organization').select('handle').where('id', '=', organizationId).executeTakeFirst()
  if (!organization) throw unauthorized()
  return `${organization.handle}/${appName}`.toLowerCase()
}

function checkFleetName(name: unknown): void {
  if (typeof name !== 'string' || !FLEET_NAME_PATTERN.test(name)) {
    throw badRequest('app_name must match ^[a-zA-Z0-9_-]+$ (letters, digits, "-" and "_")')
  }
}

/** A release a fleet or device may run: of that fleet, built successfully and not invalidated. */
async function checkRunnableRelease(context: WriteContext, releaseId: unknown, applicationId: unknown): Promise<void> {
  if (releaseId === null) return
  const release = await context.trx.selectFrom('release').select(['belongs_to__application', 'status', 'is_invalidated']).where('id', '=', releaseId).executeTakeFirst()
  if (!release || release.belongs_to__application !== applicationId) throw badRequest('the release must belong to the same fleet')
  if (release.status !== 'success' || release.is_invalidated) throw badRequest('only successful, non-invalidated releases can be pinned or tracked')
}

const application: ResourceRules = {
  async beforeCreate(context, values) {
    checkFleetName(values.app_name)
    if (values.uuid !== undefined && (typeof values.uuid !== 'string' || !/^[0-9a-f]{32}$/.test(values.uuid))) throw badRequest('uuid must be 32 lowercase hex characters')
    if (values.is_of__class !== undefined && !['fleet', 'block', 'app'].includes(values.is_of__class as string)) throw badRequest("is_of__class must be 'fleet', 'block' or 'app'")
    if (values.should_be_running__release !== undefined && values.should_be_running__release !== null) throw badRequest('a new fleet has no releases to run yet')
    defaults(values, {uuid: newUuid(), is_of__class: 'fleet', should_track_latest_release: true, is_host: false, is_archived: false, is_public: false})
    values.slug = await slugFor(context, values.organization, values.app_name as string)
    values.actor = await newActor(context, 'application')
  },
  async beforeUpdate(context, ids, values) {
    if (values.app_name !== undefined || values.organization !== undefined) {
      if (values.app_name !== undefined) checkFleetName(values.app_name)
      if (ids.length > 1) throw badRequest('rename or move fleets one at a time')
      const fleet = await context.trx.selectFrom('application').select(['app_name', 'organization']).where('id', '=', ids[0]).executeTakeFirstOrThrow()
      values.slug = await slugFor(context, values.organization ?? fleet.organization, (values.app_name ?? fleet.app_name) as string)
    }

    if (values.should_be_running__release !== undefined) {
      for (const id of ids) await checkRunnableRelease(context, values.should_be_running__release, id)
    }
  },
}

const device: ResourceRules = {
  async beforeCreate(context, values) {
    if (values.uuid !== undefined) {
      if (typeof values.uuid !== 'string' || !DEVICE_UUID_PATTERN.test(values.uuid.toLowerCase())) throw badRequest('uuid must be 32 or 62 hex characters')
      values.uuid = values.uuid.toLowerCase()
    }

    defaults(values, {uuid: newUuid(), is_online: false, api_heartbeat_state: 'unknown', is_undervolted: false, is_web_accessible: false})
    defaults(values, {device_name: (values.uuid as string).slice(0, 7)})
    if (values.is_pinned_on__release !== undefined) await checkRunnableRelease(context, values.is_pinned_on__release, values.belongs_to__application)
    values.actor = await newActor(context, 'device')
  },
  async beforeUpdate(context, ids, values) {
    if (values.device_name !== undefined && (typeof values.device_name !== 'string' || values.device_name.trim() === '')) throw badRequest('device_name must not be empty')
    if (values.belongs_to__application !== undefined && values.is_pinned_on__release === undefined) values.is_pinned_on__release = null
    if (values.is_online !== undefined) values.last_connectivity_event = now()
    if (values.is_pinned_on__release !== undefined && values.is_pinned_on__release !== null) {
      for (const id of ids) {
        const row = await context.trx.selectFrom('device').select('belongs_to__application').where('id', '=', id).executeTakeFirstOrThrow()
        await checkRunnableRelease(context, values.is_pinned_on__release, values.belongs_to__application ?? row.belongs_to__application)
      }
    }
  },
  async afterWrite(context, ids) {
    await syncDeviceServiceInstalls(context.trx, ids)
    await recordDeviceHistory(context.trx, ids, context.actor.kind === 'guest' ? null : context.actor.actorId)
  },
}

/**
 * `service` variables are environment variables of one service; like balena (which refuses the BALENA_/RESIN_
 * namespace for every environment variable) they never take a config variable's name, since those cannot be set per service.
 */
function variableRules(kind: 'environment' | 'config' | 'service'): ResourceRules {
  const check = (values: Values) => {
    if (values.name === undefined) return
    const name = values.name
    if (typeof name !== 'string') throw badRequest('name must be a string')
    if (kind === 'config' && !CONFIG_VAR_NAME_PATTERN.test(name)) throw badRequest('config variable names must start with BALENA_ or RESIN_ and use only letters, digits and "_"')
    if (kind !== 'config' && !ENV_VAR_NAME_PATTERN.test(name)) throw badRequest('variable names must match ^[A-Za-z_][A-Za-z0-9_]*$')
    if (RESERVED_VAR_NAMES.includes(name)) throw badRequest(`"${name}" is a reserved variable name`)
    if (kind === 'service' && CONFIG_VAR_NAME_PATTERN.test(name)) throw badRequest('service variables beginning with BALENA_ or RESIN_ are reserved: config variables cannot be set per service')
  }

  return {
    async beforeCreate(_context, values) {
      check(values)
    },
    async beforeUpdate(_context, _ids, values) {
      check(values)
    },
  }
}

const tag: ResourceRules = {
  async beforeCreate(_context, values) {
    // Its most characters are the model's (maxLength), checked with the other fields' types.
    if (typeof values.tag_key !== 'string' || values.tag_key.trim() === '') throw badRequest('tag_key must not be empty')
  },
  async beforeUpdate(_context, _ids, values) {
    if (values.tag_key !== undefined && (typeof values.tag_key !== 'string' || values.tag_key.trim() === '')) throw badRequest('tag_key must not be empty')
  },
}

/** A client's writes of releases go through the lifecycle the builder uses, inside the API's transaction (whose owner tells of changed targets). */
function releaseLifecycle(context: WriteContext): ReleaseLifecycle {
  return new ReleaseLifecycle(context.trx as Db)
}

const release: ResourceRules = {
  async beforeCreate(context, values) {
    if (values.commit !== undefined && (typeof values.commit !== 'string' || !/^[0-9a-f]{6,64}$/.test(values.commit))) throw badRequest('commit must be hex characters')
    if (values.commit === undefined) values.commit = newUuid()
    releaseLifecycle(context).prepareNew(values)
    // balena deploy names the caller as the release's creator; nobody may name another user.
    const creator = context.actor.kind === 'user' ? context.actor.userId : null
    if (values.is_created_by__user !== undefined && values.is_created_by__user !== creator) throw unauthorized()
    values.is_created_by__user = creator
  },
  async beforeUpdate(context, ids, values) {
    await releaseLifecycle(context).checkChange(ids, values)
  },
  async afterWrite(context, ids, values) {
    if (values.status !== undefined || values.is_final !== undefined || values.is_invalidated !== undefined) await releaseLifecycle(context).settle(ids)
  },
}

/** Through pine an asset is only ever null: a file comes through the multipart upload (routes/release-assets.ts). */
function refuseAssetBody(values: Values): void {
  if (values.asset !== undefined && values.asset !== null) throw badRequest('release_asset.asset is a file: upload it as multipart/form-data with an "asset" file field')
}

const releaseAsset: ResourceRules = {
  async beforeCreate(_context, values) {
    refuseAssetBody(values)
  },
  async beforeUpdate(_context, _ids, values) {
    refuseAssetBody(values)
  },
}

const image: ResourceRules = {
  async beforeCreate(context, values) {
    defaults(values, {status: 'Running', start_timestamp: now()})
    values.is_stored_at__image_location = `${context.registry ?? 'localhost'}/v2/${newUuid()}`
  },
}

const publicKey: ResourceRules = {
  async beforeCreate(context, values) {
    if (context.actor.kind !== 'user' || values.user !== context.actor.userId) throw unauthorized()
    if (typeof values.public_key !== 'string' || !/^(ssh-|ecdsa-|sk-)\S+ \S+/.test(values.public_key)) throw badRequest('public_key must be an OpenSSH public key ("ssh-ed25519 AAAA…")')
  },
}

const service: ResourceRules = {
  async beforeCreate(_context, values) {
    if (typeof values.service_name !== 'string' || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(values.service_name)) throw badRequest('service_name must be letters, digits, ".", "-" and "_"')
  },
  async afterWrite(context, ids) {
    await ensureServiceInstalls(context.trx, {serviceIds: ids})
  },
}

export const RESOURCE_RULES: Record<string, ResourceRules> = {
  application,
  device,
  application_environment_variable: variableRules('environment'),
  device_environment_variable: variableRules('environment'),
  application_config_variable: variableRules('config'),
  device_config_variable: variableRules('config'),
  service_environment_variable: variableRules('service'),
  device_service_environment_variable: variableRules('service'),
  application_tag: tag,
  device_tag: tag,
  release_tag: tag,
  release,
  release_asset: releaseAsset,
  image,
  service,
  user__has__public_key: publicKey,
}
