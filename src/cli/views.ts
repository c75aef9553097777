import type {ApiKey} from '../sdk/api-keys.js'
import type {Device} from '../sdk/devices.js'
import type {Fleet} from '../sdk/fleets.js'
import type {Column, Output} from './output.js'

/** How fleets and devices look to people, shared by the list and info commands so both show the same names. */
export const fleetColumns: Column<Fleet>[] = [
  {header: 'ID', value: (fleet) => fleet.id},
  {header: 'NAME', value: (fleet) => fleet.app_name},
  {header: 'SLUG', value: (fleet) => fleet.slug},
  {header: 'DEVICE TYPE', value: (fleet) => fleet.device_type},
  {header: 'DEVICES', value: (fleet) => fleet.device_count},
  {header: 'ONLINE', value: (fleet) => fleet.online_devices},
]

export function showFleet(output: Output, fleet: Fleet): void {
  output.keyValue([
    ['id', fleet.id],
    ['name', fleet.app_name],
    ['slug', fleet.slug],
    ['uuid', fleet.uuid],
    ['organization', fleet.organization],
    ['device type', fleet.device_type],
    ['devices', `${fleet.device_count} (${fleet.online_devices} online)`],
    ['tracks latest release', fleet.should_track_latest_release],
    ['created', fleet.created_at],
  ])
}

/**
 * How many leading characters tell these UUIDs apart: 7, as balena and git show them, or more when two share
 * their first 7, so that every short UUID in a table can be typed back to mean one device.
 */
export function distinctPrefixLength(uuids: string[], minimum = 7): number {
  const longest = Math.max(minimum, ...uuids.map((uuid) => uuid.length))
  for (let length = minimum; length < longest; length++) {
    if (new Set(uuids.map((uuid) => uuid.slice(0, length))).size === new Set(uuids).size) return length
  }

  return longest
}

function shortUuid(uuid: string, length = 7): string {
  return uuid.slice(0, length)
}

export function deviceColumns(output: Output, devices: Device[] = []): Column<Device>[] {
  const length = distinctPrefixLength(devices.map((device) => device.uuid))
  return [
    {header: 'UUID', value: (device) => shortUuid(device.uuid, length)},
    {header: 'NAME', value: (device) => device.device_name},
    {header: 'DEVICE TYPE', value: (device) => device.device_type},
    {header: 'FLEET', value: (device) => device.fleet},
    {header: 'STATUS', value: (device) => device.status ?? ''},
    {header: 'ONLINE', value: (device) => (device.is_online ? output.color.green('online') : output.color.dim('offline'))},
    {header: 'RELEASE', value: (device) => (device.is_running__release ? shortUuid(device.is_running__release) : '')},
  ]
}

export function showDevice(output: Output, device: Device): void {
  output.keyValue([
    ['uuid', device.uuid],
    ['name', device.device_name],
    ['id', device.id],
    ['device type', device.device_type],
    ['fleet', device.fleet],
    ['status', device.status],
    ['online', device.is_online],
    ['last seen', device.last_connectivity_event],
    ['ip address', device.ip_address],
    ['os version', device.os_version],
    ['supervisor version', device.supervisor_version],
    ['running release', device.is_running__release],
    ['pinned to release', device.is_pinned_on__release],
    ['note', device.note],
    ['created', device.created_at],
  ])
}

export const apiKeyColumns: Column<ApiKey>[] = [
  {header: 'ID', value: (key) => key.id},
  {header: 'NAME', value: (key) => key.name},
  {header: 'CREATED', value: (key) => key.created_at},
  {header: 'EXPIRES', value: (key) => key.expiry_date ?? 'never'},
  {header: 'DESCRIPTION', value: (key) => key.description},
]
