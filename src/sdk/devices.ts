import {randomBytes} from 'node:crypto'

import {ApiError, ExpectedError, NotFoundError, UsageError} from '../errors.js'
import type {FleetClient} from './client.js'
import {getFleet} from './fleets.js'
import {resolveDeviceType} from './device-types.js'
import {isUniqueViolation, odataValue} from './pine.js'
import {parseDeviceReference} from './references.js'

interface DeviceRow {
  id: number
  uuid: string
  device_name: string
  note: string | null
  is_online: boolean
  status: string | null
  api_heartbeat_state: string | null
  os_version: string | null
  supervisor_version: string | null
  ip_address: string | null
  last_connectivity_event: string | null
  created_at: string
  is_pinned_on__release: Array<{commit: string}>
  belongs_to__application: Array<{id: number; slug: string; app_name: string}>
  is_of__device_type: Array<{slug: string}>
  is_running__release: Array<{commit: string}>
}

/** A device as `--json` prints it: the API's field names plus the names of what it points to. */
export interface Device {
  id: number
  uuid: string
  device_name: string
  device_type: string
  fleet: string
  app_name: string
  is_online: boolean
  status: string | null
  api_heartbeat_state: string | null
  os_version: string | null
  supervisor_version: string | null
  ip_address: string | null
  last_connectivity_event: string | null
  is_running__release: string | null
  /** The commit of the release the device is pinned to, as `is_running__release` gives the running one's. */
  is_pinned_on__release: string | null
  note: string | null
  created_at: string
}

const DEVICE_QUERY = {
  $select: [
    'id', 'uuid', 'device_name', 'note', 'is_online', 'status', 'api_heartbeat_state', 'os_version', 'supervisor_version',
    'ip_address', 'last_connectivity_event', 'created_at',
  ],
  $expand:
    'belongs_to__application($select=id,slug,app_name),is_of__device_type($select=slug),is_running__release($select=commit),is_pinned_on__release($select=commit)',
}

const DEVICE_HINT = 'run "flotilla device list" to see your devices'

function toDevice(row: DeviceRow): Device {
  const fleet = row.belongs_to__application[0]
  return {
    id: row.id,
    uuid: row.uuid,
    device_name: row.device_name,
    device_type: row.is_of__device_type[0]?.slug ?? '',
    fleet: fleet?.slug ?? '',
    app_name: fleet?.app_name ?? '',
    is_online: row.is_online,
    status: row.status,
    api_heartbeat_state: row.api_heartbeat_state,
    os_version: row.os_version,
    supervisor_version: row.supervisor_version,
    ip_address: row.ip_address,
    last_connectivity_event: row.last_connectivity_event,
    is_running__release: row.is_running__release[0]?.commit ?? null,
    is_pinned_on__release: row.is_pinned_on__release[0]?.commit ?? null,
    note: row.note,
    created_at: row.created_at,
  }
}

export async function listDevices(client: FleetClient, options: {fleet?: string} = {}): Promise<Device[]> {
  const filter = options.fleet ? `belongs_to__application eq ${(await getFleet(client, options.fleet)).id}` : undefined
  const rows = await client.pine.get<DeviceRow>('device', {...DEVICE_QUERY, $filter: filter, $orderby: 'device_name asc'})
  return rows.map(toDevice)
}

/** How many of the devices an ambiguous UUID prefix matches are named in the error. */
const AMBIGUOUS_SHOWN = 5

/** Finds a device by full UUID or by a unique prefix of 7 or more characters. */
export async function getDevice(client: FleetClient, reference: string): Promise<Device> {
  const {uuid, exact} = parseDeviceReference(reference)
  const filter = exact ? `uuid eq ${odataValue(uuid)}` : `startswith(uuid,${odataValue(uuid)})`
  const rows = await client.pine.get<DeviceRow>('device', {...DEVICE_QUERY, $filter: filter, $top: AMBIGUOUS_SHOWN + 1, $orderby: 'uuid asc'})
  if (rows.length === 0) throw new NotFoundError('device', reference, DEVICE_HINT)
  if (rows.length > 1) {
    const shown = rows.slice(0, AMBIGUOUS_SHOWN).map((row) => `${row.uuid} (${row.device_name})`)
    const more = rows.length > AMBIGUOUS_SHOWN ? ', …' : ''
    throw new UsageError(`device "${reference}" is ambiguous: it matches ${shown.join(', ')}${more} — give more characters of its UUID`)
  }
  return toDevice(rows[0])
}

export function generateDeviceUuid(): string {
  return randomBytes(16).toString('hex')
}

/** Registers a device the way balena's SDK does: a provisioning key for the fleet, then `POST /device/register`. */
export async function registerDevice(
  client: FleetClient,
  options: {fleet: string; uuid?: string; deviceType?: string; name?: string},
): Promise<Device> {
  const fleet = await getFleet(client, options.fleet)
  const uuid = options.uuid ? parseDeviceReference(options.uuid) : {uuid: generateDeviceUuid(), exact: true}
  if (!uuid.exact) throw new UsageError(`--uuid must be a full UUID of 32 or 62 hex characters, not "${options.uuid}"`)
  const deviceType = options.deviceType ? (await resolveDeviceType(client, options.deviceType)).slug : fleet.device_type
  const provisioningKey = await client.request<string>('POST', `/api-key/application/${fleet.id}/provisioning`, {
    json: {name: `register ${uuid.uuid.slice(0, 7)}`, description: 'created by flotilla device register', expiryDate: null},
  })
  try {
    await client.request('POST', '/device/register', {
      json: {application: fleet.id, device_type: deviceType, uuid: uuid.uuid},
      headers: {authorization: `Bearer ${provisioningKey}`},
      anonymous: true,
    })
  } catch (error) {
    if (isUniqueViolation(error)) throw new UsageError(`a device with UUID ${uuid.uuid} is already registered`)
    throw error
  }

  const device = await getDevice(client, uuid.uuid)
  if (options.name) return renameDevice(client, device, options.name)
  return device
}

export async function renameDevice(client: FleetClient, device: Device, newName: string): Promise<Device> {
  if (newName.trim() === '') throw new UsageError('the new device name must not be empty')
  await client.pine.patch('device', device.id, {device_name: newName})
  return getDevice(client, device.uuid)
}

export async function moveDevice(client: FleetClient, device: Device, fleetReference: string): Promise<Device> {
  const fleet = await getFleet(client, fleetReference)
  await client.pine.patch('device', device.id, {belongs_to__application: fleet.id, is_pinned_on__release: null})
  return getDevice(client, device.uuid)
}

export async function removeDevice(client: FleetClient, device: Device): Promise<void> {
  await client.pine.delete('device', device.id)
}

/** What a device can be asked to do through the server (balena's supervisor API paths). */
export type DeviceActionName = 'restart' | 'reboot' | 'shutdown' | 'purge' | 'identify'

const ACTION_PATHS: Record<DeviceActionName, string> = {restart: '/v1/restart', reboot: '/v1/reboot', shutdown: '/v1/shutdown', purge: '/v1/purge', identify: '/v1/blink'}

async function fleetIdOf(client: FleetClient, device: Device): Promise<number> {
  const rows = await client.pine.get<{belongs_to__application: Array<{id: number}>}>('device', {
    $select: ['id'],
    $expand: 'belongs_to__application($select=id)',
    $filter: `id eq ${device.id}`,
  })
  const fleetId = rows[0]?.belongs_to__application[0]?.id
  if (fleetId === undefined) throw new NotFoundError('device', device.uuid, DEVICE_HINT)
  return fleetId
}

/** Asks the device, through the server, to restart its app's services, reboot, shut down, purge its app's data or identify itself. */
export async function sendDeviceAction(client: FleetClient, device: Device, action: DeviceActionName, options: {force?: boolean} = {}): Promise<void> {
  const data: Record<string, unknown> = action === 'restart' || action === 'purge' ? {appId: await fleetIdOf(client, device)} : {force: options.force ?? false}
  try {
    await client.request('POST', `/supervisor${ACTION_PATHS[action]}`, {json: {uuid: device.uuid, method: 'POST', data}})
  } catch (error) {
    if (error instanceof ApiError && error.statusCode === 404) throw new ExpectedError(`device ${device.uuid.slice(0, 7)} is not online — its agent must be running to ${action}`)
    throw error
  }
}

/** Pins a device to a release of its fleet, or (null) lets it follow its fleet's release again. */
export async function pinDevice(client: FleetClient, device: Device, release: {id: number; fleet: string; commit: string} | null): Promise<Device> {
  if (release && release.fleet !== device.fleet) throw new UsageError(`release ${release.commit.slice(0, 7)} belongs to fleet ${release.fleet}, not to the device's fleet ${device.fleet}`)
  await client.pine.patch('device', device.id, {is_pinned_on__release: release?.id ?? null})
  return getDevice(client, device.uuid)
}
