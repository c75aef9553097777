import {UsageError} from '../errors.js'
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
  config: boolean
}

const NAME_RULE = /^[A-Za-z_]\w*$/
const CONFIG_PREFIXES = ['BALENA_', 'RESIN_']

/** Names starting BALENA_ or RESIN_ are configuration of the device's OS and agent, stored apart (as on balena). */
export function isConfigVariableName(name: string): boolean {
  return CONFIG_PREFIXES.some((prefix) => name.startsWith(prefix))
}

function resourceOf(owner: VariableOwner, config: boolean): {resource: string; parentField: string; parentId: number} {
  const kind = config ? 'config' : 'environment'
  return 'fleet' in owner
    ? {resource: `application_${kind}_variable`, parentField: 'application', parentId: owner.fleet.id}
    : {resource: `device_${kind}_variable`, parentField: 'device', parentId: owner.device.id}
}

interface VariableRow {
  id: number
  name: string
  value: string
}

async function ownVariables(client: FleetClient, owner: VariableOwner, config: boolean): Promise<Variable[]> {
  const {resource, parentField, parentId} = resourceOf(owner, config)
  const rows = await client.pine.get<VariableRow>(resource, {
    $select: ['id', 'name', 'value'],
    $filter: `${parentField} eq ${parentId}`,
    $orderby: 'name asc',
  })
  return rows.map((row) => ({
    ...row,
    fleet: 'fleet' in owner ? owner.fleet.slug : null,
    device: 'device' in owner ? owner.device.uuid : null,
    config,
  }))
}

/** A fleet's variables, or a device's own ones together with the fleet's it inherits and does not override. */
export async function listVariables(client: FleetClient, owner: VariableOwner, options: {config: boolean}): Promise<Variable[]> {
  const own = await ownVariables(client, owner, options.config)
  if ('fleet' in owner) return own
  const fleet = await getFleet(client, owner.device.fleet)
  const inherited = (await ownVariables(client, {fleet}, options.config)).filter(
    (variable) => !own.some((mine) => mine.name === variable.name),
  )
  return [...own, ...inherited].sort((a, b) => a.name.localeCompare(b.name))
}

export function validateVariableName(name: string): void {
  if (!NAME_RULE.test(name)) {
    throw new UsageError(`invalid variable name "${name}" — use letters, digits and "_", not starting with a digit`)
  }
}

export async function setVariable(client: FleetClient, owner: VariableOwner, name: string, value: string): Promise<void> {
  validateVariableName(name)
  const {resource, parentField, parentId} = resourceOf(owner, isConfigVariableName(name))
  await client.pine.upsert(resource, {[parentField]: parentId, name}, {value})
}

/** Removes a variable by name; returns false when there was none. */
export async function removeVariable(client: FleetClient, owner: VariableOwner, name: string): Promise<boolean> {
  const {resource, parentField, parentId} = resourceOf(owner, isConfigVariableName(name))
  const filter = `${parentField} eq ${parentId} and name eq ${odataValue(name)}`
  const existing = await client.pine.get<VariableRow>(resource, {$select: ['id'], $filter: filter})
  if (existing.length === 0) return false
  await client.pine.delete(resource, existing[0].id)
  return true
}
