import {ApiError, ExpectedError, NotFoundError, UsageError} from '../errors.js'
import type {FleetClient} from './client.js'
import {resolveDeviceType} from './device-types.js'
import {myOrganizations, type Organization} from './organizations.js'
import {isUniqueViolation, odataValue} from './pine.js'
import {parseFleetReference} from './references.js'

interface ApplicationRow {
  id: number
  app_name: string
  slug: string
  uuid: string
  created_at: string
  should_track_latest_release: boolean
  is_of__class: string
  is_for__device_type: Array<{slug: string}>
  organization: Array<{handle: string}>
  owns__device: Array<{is_online: boolean}>
  should_be_running__release: {__id: number} | null
}

/** A fleet as `--json` prints it: the API's own field names plus the names of what it points to. */
export interface Fleet {
  id: number
  app_name: string
  slug: string
  uuid: string
  device_type: string
  organization: string
  device_count: number
  online_devices: number
  should_track_latest_release: boolean
  should_be_running__release: number | null
  created_at: string
}

const FLEET_QUERY = {
  $select: ['id', 'app_name', 'slug', 'uuid', 'created_at', 'should_track_latest_release', 'is_of__class', 'should_be_running__release'],
  $expand: 'is_for__device_type($select=slug),organization($select=handle),owns__device($select=is_online)',
}

const FLEET_HINT = 'run "flotilla fleet list" to see your fleets'

function toFleet(row: ApplicationRow): Fleet {
  return {
    id: row.id,
    app_name: row.app_name,
    slug: row.slug,
    uuid: row.uuid,
    device_type: row.is_for__device_type[0]?.slug ?? '',
    organization: row.organization[0]?.handle ?? '',
    device_count: row.owns__device.length,
    online_devices: row.owns__device.filter((device) => device.is_online).length,
    should_track_latest_release: row.should_track_latest_release,
    should_be_running__release: row.should_be_running__release?.__id ?? null,
    created_at: row.created_at,
  }
}

export async function listFleets(client: FleetClient, options: {organization?: string} = {}): Promise<Fleet[]> {
  const filters = ["is_of__class eq 'fleet'", 'is_host eq false']
  if (options.organization) filters.push(`organization/handle eq ${odataValue(options.organization)}`)
  const rows = await client.pine.get<ApplicationRow>('application', {...FLEET_QUERY, $filter: filters.join(' and '), $orderby: 'slug asc'})
  return rows.map(toFleet)
}

/** Finds a fleet by slug or by name; a name shared by fleets of several organizations must be given as a slug. */
export async function getFleet(client: FleetClient, reference: string): Promise<Fleet> {
  const parsed = parseFleetReference(reference)
  const filter = 'slug' in parsed ? `slug eq ${odataValue(parsed.slug)}` : `app_name eq ${odataValue(parsed.name)}`
  const rows = await client.pine.get<ApplicationRow>('application', {...FLEET_QUERY, $filter: `${filter} and is_host eq false`})
  if (rows.length === 0) throw new NotFoundError('fleet', reference, FLEET_HINT)
  if (rows.length > 1) {
    throw new UsageError(`fleet name "${reference}" is ambiguous (${rows.map((row) => row.slug).join(', ')}) — give the slug`)
  }

  return toFleet(rows[0])
}

async function chooseOrganization(client: FleetClient, handle: string | undefined): Promise<Organization> {
  const organizations = await myOrganizations(client)
  if (handle) {
    const found = organizations.find((organization) => organization.handle === handle.toLowerCase())
    if (!found) throw new NotFoundError('organization', handle, 'run "flotilla organization list" to see yours')
    return found
  }

  if (organizations.length === 1) return organizations[0]
  const {username} = await client.request<{username: string}>('GET', '/user/v1/whoami')
  const personal = organizations.find((organization) => organization.handle === username.toLowerCase())
  if (personal) return personal
  throw new UsageError('you belong to several organizations — choose one with --organization')
}

export async function createFleet(client: FleetClient, options: {name: string; deviceType: string; organization?: string}): Promise<Fleet> {
  if (!/^[\w-]+$/.test(options.name)) {
    throw new UsageError(`invalid fleet name "${options.name}" — use letters, digits, "-" and "_" only`)
  }

  const deviceType = await resolveDeviceType(client, options.deviceType)
  const organization = await chooseOrganization(client, options.organization)
  try {
    await client.pine.post('application', {
      app_name: options.name,
      organization: organization.id,
      is_for__device_type: deviceType.id,
    })
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw new ExpectedError(`a fleet named "${options.name}" already exists in organization "${organization.handle}" — choose another name`)
    }

    throw error
  }

  return getFleet(client, `${organization.handle}/${options.name}`)
}

export async function renameFleet(client: FleetClient, reference: string, newName: string): Promise<Fleet> {
  if (!/^[\w-]+$/.test(newName)) throw new UsageError(`invalid fleet name "${newName}" — use letters, digits, "-" and "_" only`)
  const fleet = await getFleet(client, reference)
  try {
    await client.pine.patch('application', fleet.id, {app_name: newName})
  } catch (error) {
    if (isUniqueViolation(error)) {
      throw new ExpectedError(`a fleet named "${newName}" already exists in organization "${fleet.organization}" — choose another name`)
    }

    throw error
  }

  return getFleet(client, `${fleet.organization}/${newName}`)
}

export async function removeFleet(client: FleetClient, fleet: Fleet): Promise<void> {
  await client.pine.delete('application', fleet.id)
}

/** Runs one release on the whole fleet (devices pinned elsewhere excepted) and stops following new releases. */
export async function pinFleet(client: FleetClient, fleet: Fleet, release: {id: number; fleet: string; commit: string}): Promise<Fleet> {
  if (release.fleet !== fleet.slug) throw new UsageError(`release ${release.commit.slice(0, 7)} belongs to fleet ${release.fleet}, not to ${fleet.slug}`)
  await client.pine.patch('application', fleet.id, {should_be_running__release: release.id, should_track_latest_release: false})
  return getFleet(client, fleet.slug)
}

/** Makes the fleet follow its newest final successful release again, and run it now. */
export async function trackLatestRelease(client: FleetClient, fleet: Fleet): Promise<Fleet> {
  const [latest] = await client.pine.get<{id: number}>('release', {
    $select: ['id'],
    $filter: `belongs_to__application eq ${fleet.id} and status eq 'success' and is_final eq true and is_invalidated eq false`,
    $orderby: 'created_at desc',
    $top: 1,
  })
  await client.pine.patch('application', fleet.id, {should_track_latest_release: true, ...(latest ? {should_be_running__release: latest.id} : {})})
  return getFleet(client, fleet.slug)
}

/** Asks every online device of the fleet, through the server, to restart the fleet's services. */
export async function restartFleet(client: FleetClient, fleet: Fleet): Promise<void> {
  try {
    await client.request('POST', '/supervisor/v1/restart', {json: {appId: fleet.id, method: 'POST', data: {appId: fleet.id}}})
  } catch (error) {
    if (error instanceof ApiError && error.statusCode === 404) throw new ExpectedError(`fleet ${fleet.slug} has no online device to restart`)
    throw error
  }
}
