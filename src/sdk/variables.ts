import {ExpectedError, UsageError} from '../errors.js'
import type {FleetClient} from './client.js'
import type {Device} from './devices.js'
import {type Fleet, getFleet} from './fleets.js'
import {odataValue} from './pine.js'

/** Where a variable lives: on a fleet, or on one device (which also inherits its fleet's). */
export type VariableOwner = {fleet: Fleet} | {device: Device}

export interface Variable {
  id: number
  name: string
  value: string
  /** The fleet slug for a fleet variable, else null. */
  fleet: string | null
  /** The device UUID for a device variable, else null. */
  device: string | null
  /** The service name for a service variable, else null (it applies to all services). */
  service: string | null
  config: boolean
}

/** Which of balena's six variable resources: fleet or device, environment or config, all services or one. */
export interface VariableKind {
  device: boolean
  config: boolean
  service: boolean
}

const NAME_RULE = /^[A-Za-z_]\w*$/
const CONFIG_PREFIXES = ['BALENA_', 'RESIN_']

/** Names starting BALENA_ or RESIN_ are configuration of the device's OS and agent, stored apart (as on balena). */
export function isConfigVariableName(name: string): boolean {
  return CONFIG_PREFIXES.some((prefix) => name.startsWith(prefix))
}

/** The API resource of a kind of variable, named as balena-cli's `getVarResourceName` names them. */
export function variableResource(kind: VariableKind): string {
  if (kind.device) return kind.config ? 'device_config_variable' : kind.service ? 'device_service_environment_variable' : 'device_environment_variable'
  return kind.config ? 'application_config_variable' : kind.service ? 'service_environment_variable' : 'application_environment_variable'
}

/** The field linking a variable of this kind to its owner or to the service install it hangs off. */
function parentField(kind: VariableKind): string {
  if (kind.service) return kind.device ? 'service_install' : 'service'
  return kind.device ? 'device' : 'application'
}

interface VariableRow {
  id: number
  name: string
  value: string
  service?: Array<{service_name: string}>
  service_install?: Array<{installs__service: Array<{service_name: string}>}>
}

/** The service name of a service variable row, expanded as balena-cli expands it. */
function serviceNameOf(row: VariableRow): string | null {
  return row.service?.[0]?.service_name ?? row.service_install?.[0]?.installs__service[0]?.service_name ?? null
}

async function variablesOfKind(client: FleetClient, kind: VariableKind, filter: string, labels: {fleet: string | null; device: string | null}): Promise<Variable[]> {
  const expand = kind.service ? (kind.device ? 'service_install($select=id;$expand=installs__service($select=service_name))' : 'service($select=service_name)') : undefined
  const rows = await client.pine.get<VariableRow>(variableResource(kind), {$select: ['id', 'name', 'value'], $filter: filter, $expand: expand, $orderby: 'name asc'})
  return rows.map((row) => ({id: row.id, name: row.name, value: row.value, ...labels, service: serviceNameOf(row), config: kind.config}))
}

/** The fleet a variable owner belongs to. */
async function fleetOf(client: FleetClient, owner: VariableOwner): Promise<Fleet> {
  return 'fleet' in owner ? owner.fleet : getFleet(client, owner.device.fleet)
}

/** A fleet's service by name; an unknown name is an error naming the services the fleet has. */
export async function getFleetService(client: FleetClient, fleet: Fleet, serviceName: string): Promise<{id: number; service_name: string}> {
  const services = await client.pine.get<{id: number; service_name: string}>('service', {$select: ['id', 'service_name'], $filter: `application eq ${fleet.id}`, $orderby: 'service_name asc'})
  const service = services.find((candidate) => candidate.service_name === serviceName)
  if (service) return service
  const known = services.length > 0 ? `its services are ${services.map((candidate) => candidate.service_name).join(', ')}` : 'it has no services yet (push a release first)'
  throw new ExpectedError(`service "${serviceName}" not found in fleet ${fleet.slug} — ${known}`)
}

/** Whether a variable applies to a service: to all services, or to that one. */
const appliesTo = (variable: Variable, serviceName: string | undefined) => serviceName === undefined || variable.service === null || variable.service === serviceName

/**
 * The variables that apply to a fleet or a device, service variables included (balena-cli's `env list`): a fleet's
 * own and its services'; for a device also its own and its device-service variables, with the fleet's it inherits,
 * leaving out those a device-level variable of the same name fully overrides. `service` keeps only the variables
 * that reach that service.
 */
export async function listVariables(client: FleetClient, owner: VariableOwner, options: {config: boolean; service?: string}): Promise<Variable[]> {
  const fleet = await fleetOf(client, owner)
  if (options.service !== undefined) await getFleetService(client, fleet, options.service)
  const fleetLabels = {fleet: fleet.slug, device: null}
  const fleetKind = {device: false, config: options.config, service: false}
  const levels: Variable[][] = [await variablesOfKind(client, fleetKind, `application eq ${fleet.id}`, fleetLabels)]
  if (!options.config) levels.push(await variablesOfKind(client, {...fleetKind, service: true}, `service/application eq ${fleet.id}`, fleetLabels))
  if ('device' in owner) {
    const deviceLabels = {fleet: fleet.slug, device: owner.device.uuid}
    const deviceKind = {device: true, config: options.config, service: false}
    levels.push(await variablesOfKind(client, deviceKind, `device eq ${owner.device.id}`, deviceLabels))
    if (!options.config) levels.push(await variablesOfKind(client, {...deviceKind, service: true}, `service_install/device eq ${owner.device.id}`, deviceLabels))
  }

  const all = levels.flat().filter((variable) => appliesTo(variable, options.service))
  const overridden = (variable: Variable) =>
    variable.device === null &&
    all.some((other) => other.device !== null && other.name === variable.name && (other.service === null || other.service === variable.service))
  const serviceOrder = (variable: Variable) => variable.service ?? ''
  return all
    .filter((variable) => !overridden(variable))
    .sort((a, b) => a.name.localeCompare(b.name) || serviceOrder(a).localeCompare(serviceOrder(b)) || Number(a.device !== null) - Number(b.device !== null))
}

export function validateVariableName(name: string): void {
  if (!NAME_RULE.test(name)) {
    throw new UsageError(`invalid variable name "${name}" — use letters, digits and "_", not starting with a digit`)
  }
}

function refuseConfigPerService(name: string): void {
  if (isConfigVariableName(name)) {
    throw new UsageError(`config variables (${CONFIG_PREFIXES.join(' or ')}…) cannot be set per service — remove --service or rename the variable`)
  }
}

/** Where a variable of this owner and service is stored: its resource, and the natural key naming it with its name. */
async function variableSlot(client: FleetClient, owner: VariableOwner, name: string, serviceName: string | undefined): Promise<{resource: string; key: Record<string, string | number>}> {
  const config = isConfigVariableName(name)
  if (serviceName === undefined) {
    const kind = {device: 'device' in owner, config, service: false}
    const parentId = 'device' in owner ? owner.device.id : owner.fleet.id
    return {resource: variableResource(kind), key: {[parentField(kind)]: parentId, name}}
  }

  refuseConfigPerService(name)
  const service = await getFleetService(client, await fleetOf(client, owner), serviceName)
  if ('fleet' in owner) return {resource: 'service_environment_variable', key: {service: service.id, name}}
  const installs = await client.pine.get<{id: number}>('service_install', {$select: ['id'], $filter: `device eq ${owner.device.id} and installs__service eq ${service.id}`})
  if (installs.length === 0) {
    throw new ExpectedError(`service "${serviceName}" is not installed on device ${owner.device.uuid.slice(0, 7)} yet — set the variable for the fleet, or wait until the device runs a release with it`)
  }

  return {resource: 'device_service_environment_variable', key: {service_install: installs[0].id, name}}
}

/** Sets (creates or replaces) a variable of a fleet or device, or of one of their fleet's services with `service`. */
export async function setVariable(client: FleetClient, owner: VariableOwner, name: string, value: string, options: {service?: string} = {}): Promise<void> {
  validateVariableName(name)
  const {resource, key} = await variableSlot(client, owner, name, options.service)
  await client.pine.upsert(resource, key, {value})
}

/** Removes a variable by name; returns false when there was none. */
export async function removeVariable(client: FleetClient, owner: VariableOwner, name: string, options: {service?: string} = {}): Promise<boolean> {
  const {resource, key} = await variableSlot(client, owner, name, options.service)
  const filter = Object.entries(key)
    .map(([field, value]) => `${field} eq ${odataValue(value)}`)
    .join(' and ')
  const existing = await client.pine.get<{id: number}>(resource, {$select: ['id'], $filter: filter})
  if (existing.length === 0) return false
  await client.pine.delete(resource, existing[0].id)
  return true
}

/**
 * Removes a variable by the id `env list` shows, from the resource its kind names (balena-cli's `env rm ID`).
 * With an owner or a service name, the variable must also belong to them. Returns false when no such variable is visible.
 */
export async function removeVariableById(
  client: FleetClient,
  id: number,
  options: {owner?: VariableOwner; service?: string; config: boolean},
): Promise<boolean> {
  if (options.config && options.service !== undefined) throw new UsageError('--config and --service cannot be used together: config variables are never per service')
  const kind = {device: options.owner !== undefined && 'device' in options.owner, config: options.config, service: options.service !== undefined}
  const conditions = [`id eq ${id}`]
  if (options.owner) {
    const ownerId = 'device' in options.owner ? options.owner.device.id : options.owner.fleet.id
    const ownerPath = kind.service ? (kind.device ? 'service_install/device' : 'service/application') : parentField(kind)
    conditions.push(`${ownerPath} eq ${ownerId}`)
  }

  if (options.service !== undefined) {
    const servicePath = kind.device ? 'service_install/installs__service/service_name' : 'service/service_name'
    conditions.push(`${servicePath} eq ${odataValue(options.service)}`)
  }

  const resource = variableResource(kind)
  const existing = await client.pine.get<{id: number}>(resource, {$select: ['id'], $filter: conditions.join(' and ')})
  if (existing.length === 0) return false
  await client.pine.delete(resource, id)
  return true
}
