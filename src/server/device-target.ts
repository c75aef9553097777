import {createHash} from 'node:crypto'

import type {ServiceComposition, TargetApp, TargetRelease, TargetService, TargetState, TargetVolume} from '../protocol/target-state.js'
import type {Db} from './db/database.js'

interface CompositionDocument {
  services?: Record<string, ServiceComposition>
  volumes?: Record<string, TargetVolume | null>
  networks?: Record<string, unknown>
}

/** Compose lets labels be a mapping or a `KEY=value` list; the target state always carries a mapping. */
function labelsOf(labels: ServiceComposition['labels']): Record<string, string> {
  if (!labels) return {}
  if (!Array.isArray(labels)) return Object.fromEntries(Object.entries(labels).map(([key, value]) => [key, String(value)]))
  return Object.fromEntries(
    labels.map((entry) => {
      const separator = entry.indexOf('=')
      return separator === -1 ? [entry, ''] : [entry.slice(0, separator), entry.slice(separator + 1)]
    }),
  )
}

function variablesOf(rows: Array<{name: string; value: string}>): Record<string, string> {
  return Object.fromEntries(rows.map((row) => [row.name, row.value]))
}

/**
 * Where a device pulls an image from: by digest from the registry it was pushed to, else the local tag the
 * builder gave it (a one-machine setup without a registry keeps the image in the engine the agent shares).
 */
export function imageReferenceOf(image: {location: string; contentHash: string | null; pushedAt: string | null}): string {
  if (image.pushedAt && image.contentHash) return `${image.location}@${image.contentHash}`
  return `${image.location}:latest`
}

/** Per service id, the variables of one level (fleet-wide service variables, or this device's service variables). */
function variablesByService(rows: Array<{service: number; name: string; value: string}>): Map<number, Record<string, string>> {
  const byService = new Map<number, Record<string, string>>()
  for (const row of rows) byService.set(row.service, {...byService.get(row.service), [row.name]: row.value})
  return byService
}

/** The variable levels a service's environment is merged from, lowest first (open-balena-api's state v3 order). */
interface EnvironmentLevels {
  fleet: Record<string, string>
  service: Map<number, Record<string, string>>
  device: Record<string, string>
  deviceService: Map<number, Record<string, string>>
}

/** fleet, then the service's, then the device's, then the device's for this service: each overrides the ones before. */
function serviceEnvironment(levels: EnvironmentLevels, serviceId: number): Record<string, string> {
  return {...levels.fleet, ...levels.service.get(serviceId), ...levels.device, ...levels.deviceService.get(serviceId)}
}

/** A fleet's own variable levels (no device's): its variables and its services' fleet-wide variables. */
async function fleetEnvironmentLevels(db: Db, appId: number): Promise<EnvironmentLevels> {
  const [fleet, service] = await Promise.all([
    db.selectFrom('application_environment_variable').select(['name', 'value']).where('application', '=', appId).orderBy('name').execute(),
    db
      .selectFrom('service_environment_variable as variable')
      .innerJoin('service', 'service.id', 'variable.service')
      .select(['variable.service', 'variable.name', 'variable.value'])
      .where('service.application', '=', appId)
      .orderBy('variable.name')
      .execute(),
  ])
  return {fleet: variablesOf(fleet), service: variablesByService(service), device: {}, deviceService: new Map()}
}

async function targetReleaseOf(db: Db, releaseId: number, environment: EnvironmentLevels) {
  const release = await db.selectFrom('release').select(['id', 'commit', 'composition']).where('id', '=', releaseId).executeTakeFirst()
  if (!release) return undefined
  const composition = (release.composition ? JSON.parse(release.composition) : {}) as CompositionDocument
  const images = await db
    .selectFrom('image__is_part_of__release as part')
    .innerJoin('image', 'image.id', 'part.image')
    .innerJoin('service', 'service.id', 'image.is_a_build_of__service')
    .select(['image.id as imageId', 'image.is_stored_at__image_location as location', 'image.content_hash as contentHash', 'image.push_timestamp as pushedAt', 'service.id as serviceId', 'service.service_name as serviceName'])
    .where('part.is_part_of__release', '=', releaseId)
    .orderBy('service.service_name')
    .execute()
  const services: Record<string, TargetService> = {}
  for (const image of images) {
    const serviceComposition = composition.services?.[image.serviceName] ?? {}
    services[image.serviceName] = {
      id: image.serviceId,
      image_id: image.imageId,
      image: imageReferenceOf(image),
      environment: serviceEnvironment(environment, image.serviceId),
      labels: labelsOf(serviceComposition.labels),
      composition: serviceComposition,
    }
  }

  const volumes = Object.fromEntries(Object.entries(composition.volumes ?? {}).map(([name, volume]) => [name, volume ?? {}]))
  const target: TargetRelease = {id: release.id, services, volumes, networks: composition.networks ?? {}}
  return {commit: release.commit, target}
}

type FleetRow = {id: number; uuid: string; app_name: string; is_host: number; is_of__class: string; should_be_running__release: number | null}
type SharedRelease = {commit: string; target: TargetRelease} | undefined

/**
 * What the devices of a fleet share, read once however many devices are computed with it: the fleet, its config
 * variables, and each release with the fleet's variable levels merged in. Good for one computation (a fresh one
 * reads everything again); {@link TargetStates} keeps one until something a target is made of changes.
 */
export class SharedTargetParts {
  private readonly fleets = new Map<number, Promise<{row: FleetRow; config: Record<string, string>} | undefined>>()
  private readonly levels = new Map<number, Promise<EnvironmentLevels>>()
  private readonly releases = new Map<string, Promise<SharedRelease>>()

  constructor(private readonly db: Db) {}

  fleet(appId: number) {
    let fleet = this.fleets.get(appId)
    if (!fleet) {
      fleet = Promise.all([
        this.db.selectFrom('application').select(['id', 'uuid', 'app_name', 'is_host', 'is_of__class', 'should_be_running__release']).where('id', '=', appId).executeTakeFirst(),
        this.db.selectFrom('application_config_variable').select(['name', 'value']).where('application', '=', appId).orderBy('name').execute(),
      ]).then(([row, config]) => row && {row: row as FleetRow, config: variablesOf(config)})
      this.fleets.set(appId, fleet)
    }

    return fleet
  }

  fleetLevels(appId: number): Promise<EnvironmentLevels> {
    let levels = this.levels.get(appId)
    if (!levels) {
      levels = fleetEnvironmentLevels(this.db, appId)
      this.levels.set(appId, levels)
    }

    return levels
  }

  /** A release as every device of the fleet without variables of its own runs it. */
  release(appId: number, releaseId: number): Promise<SharedRelease> {
    const key = `${appId}:${releaseId}`
    let release = this.releases.get(key)
    if (!release) {
      release = this.fleetLevels(appId).then((levels) => targetReleaseOf(this.db, releaseId, levels))
      this.releases.set(key, release)
    }

    return release
  }
}

/** The variables of one device (config, environment, and environment of its services), by device id. */
async function deviceVariables(db: Db, range: {from: number; to: number}) {
  const [config, environment, serviceEnvironment] = await Promise.all([
    db.selectFrom('device_config_variable').select(['device', 'name', 'value']).where('device', '>=', range.from).where('device', '<', range.to).orderBy('name').execute(),
    db.selectFrom('device_environment_variable').select(['device', 'name', 'value']).where('device', '>=', range.from).where('device', '<', range.to).orderBy('name').execute(),
    db
      .selectFrom('device_service_environment_variable as variable')
      .innerJoin('service_install as install', 'install.id', 'variable.service_install')
      .select(['install.device', 'install.installs__service as service', 'variable.name', 'variable.value'])
      .where('install.device', '>=', range.from)
      .where('install.device', '<', range.to)
      .orderBy('variable.name')
      .execute(),
  ])
  const byDevice = <T extends {device: number}>(rows: T[]) => {
    const grouped = new Map<number, T[]>()
    for (const row of rows) grouped.set(row.device, [...(grouped.get(row.device) ?? []), row])
    return grouped
  }

  return {config: byDevice(config), environment: byDevice(environment), serviceEnvironment: byDevice(serviceEnvironment)}
}

/** The shared release with this device's own variable levels over each service's environment. */
function withDeviceVariables(release: {commit: string; target: TargetRelease}, device: Record<string, string>, deviceService: Map<number, Record<string, string>>) {
  if (Object.keys(device).length === 0 && deviceService.size === 0) return release
  const services: Record<string, TargetService> = {}
  for (const [name, service] of Object.entries(release.target.services)) {
    services[name] = {...service, environment: {...service.environment, ...device, ...deviceService.get(service.id)}}
  }

  return {commit: release.commit, target: {...release.target, services}}
}

/**
 * The target states of the devices whose ids are in [from, to), computed from the database: each device's name,
 * config variables (fleet's, then the device's over them) and its fleet's app with the release it should run (its
 * pin, else the fleet's target), each service's environment merged lowest first: fleet variables, the service's
 * fleet-wide variables, device variables, then the device's variables of that service (open-balena-api's order).
 * What devices share is read once through `shared`.
 */
export async function computeTargetStates(db: Db, range: {from: number; to: number}, shared = new SharedTargetParts(db)): Promise<Map<number, TargetState>> {
  const [devices, variables] = await Promise.all([
    db
      .selectFrom('device')
      .select(['id', 'uuid', 'device_name', 'is_pinned_on__release as pinnedRelease', 'belongs_to__application as appId'])
      .where('id', '>=', range.from)
      .where('id', '<', range.to)
      .execute(),
    deviceVariables(db, range),
  ])
  const targets = new Map<number, TargetState>()
  for (const device of devices) {
    const fleet = await shared.fleet(device.appId)
    if (!fleet) continue
    const app: TargetApp = {id: fleet.row.id, name: fleet.row.app_name, is_host: Boolean(fleet.row.is_host), class: fleet.row.is_of__class as TargetApp['class']}
    const releaseId = device.pinnedRelease ?? fleet.row.should_be_running__release
    const release = releaseId === null ? undefined : await shared.release(device.appId, releaseId)
    if (release) {
      const own = withDeviceVariables(release, variablesOf(variables.environment.get(device.id) ?? []), variablesByService(variables.serviceEnvironment.get(device.id) ?? []))
      app.releases = {[own.commit]: own.target}
    }

    const config = {...fleet.config, ...variablesOf(variables.config.get(device.id) ?? [])}
    targets.set(device.id, {[device.uuid]: {name: device.device_name, config, apps: {[fleet.row.uuid]: app}}})
  }

  return targets
}

/** The target state of one device, computed live from the database (see {@link computeTargetStates}); undefined when there is no such device. */
export async function computeTargetState(db: Db, deviceId: number): Promise<TargetState | undefined> {
  return (await computeTargetStates(db, {from: deviceId, to: deviceId + 1})).get(deviceId)
}

/**
 * A fleet's target without a device (balena's `GET /device/v3/fleet/<uuid>/state`, which preloading tools read):
 * keyed by the fleet's uuid, its config variables, and the release given (else the fleet's target) with the fleet's
 * and its services' variables. Undefined when there is no such fleet.
 */
export async function computeFleetTargetState(db: Db, appId: number, releaseId?: number): Promise<TargetState | undefined> {
  const fleet = await db
    .selectFrom('application')
    .select(['id', 'uuid', 'app_name', 'is_host', 'is_of__class', 'should_be_running__release'])
    .where('id', '=', appId)
    .executeTakeFirst()
  if (!fleet) return undefined
  const config = await db.selectFrom('application_config_variable').select(['name', 'value']).where('application', '=', appId).orderBy('name').execute()
  const app: TargetApp = {id: fleet.id, name: fleet.app_name, is_host: Boolean(fleet.is_host), class: fleet.is_of__class as TargetApp['class']}
  const targetId = releaseId ?? fleet.should_be_running__release
  if (targetId !== null) {
    const release = await targetReleaseOf(db, targetId, await fleetEnvironmentLevels(db, appId))
    if (release) app.releases = {[release.commit]: release.target}
  }

  return {[fleet.uuid]: {name: fleet.app_name, config: variablesOf(config), apps: {[fleet.uuid]: app}}}
}

/** A service in balena's v2 target state: its composition's keys, then what the server decides over them. */
export type ServiceV2 = Record<string, unknown> & {imageId: number; serviceName: string; image: string; running: boolean; environment: Record<string, string>; labels: Record<string, string>}

/** balena's v2 target state (`GET /device/v2/<uuid>/state`, which balena-sdk's getSupervisorTargetState reads). */
export interface TargetStateV2 {
  local: {
    name: string
    config: Record<string, string>
    apps: Record<string, {name: string; commit?: string; releaseId?: number; services: Record<string, ServiceV2>; volumes: Record<string, unknown>; networks: Record<string, unknown>}>
  }
  dependent: {apps: Record<string, never>; devices: Record<string, never>}
}

/** The v2 form of a device's v3 target state: apps by id, services by id, the release's commit and id beside them. */
export function targetStateV2Of(state: TargetState): TargetStateV2 {
  const [device] = Object.values(state)
  const apps: TargetStateV2['local']['apps'] = {}
  for (const app of Object.values(device.apps)) {
    const [release] = Object.entries(app.releases ?? {})
    if (!release) {
      apps[app.id] = {name: app.name, services: {}, volumes: {}, networks: {}}
      continue
    }

    const [commit, target] = release
    const services: Record<string, ServiceV2> = {}
    for (const [serviceName, service] of Object.entries(target.services)) {
      // The builder's key means nothing to a device.
      const {build: _build, ...composition} = service.composition
      services[service.id] = {...composition, imageId: service.image_id, serviceName, image: service.image, running: true, environment: service.environment, labels: service.labels}
    }

    apps[app.id] = {name: app.name, commit, releaseId: target.id, services, volumes: target.volumes, networks: target.networks}
  }

  return {local: {name: device.name, config: device.config, apps}, dependent: {apps: {}, devices: {}}}
}

/** A strong validator of a target state body: equal bodies, equal tags. */
export function entityTagOf(body: string): string {
  return `"${createHash('sha256').update(body).digest('base64url')}"`
}

/** Whether an `If-None-Match` header names this tag (`*`, a list, or weak forms included). */
export function matchesEntityTag(ifNoneMatch: string | undefined, tag: string): boolean {
  if (!ifNoneMatch) return false
  return ifNoneMatch.split(',').some((candidate) => {
    const trimmed = candidate.trim()
    return trimmed === '*' || trimmed.replace(/^W\//, '') === tag
  })
}
