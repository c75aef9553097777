import {UsageError} from '../errors.js'
import type {FleetClient} from './client.js'
import {odataValue} from './pine.js'

export interface DeviceType {
  id: number
  slug: string
  name: string
  arch: string
}

interface DeviceTypeRow {
  id: number
  slug: string
  name: string
  is_of__cpu_architecture: Array<{slug: string}>
}

const QUERY = {$select: ['id', 'slug', 'name', 'is_of__cpu_architecture'], $expand: 'is_of__cpu_architecture($select=slug)'}

function toDeviceType(row: DeviceTypeRow): DeviceType {
  return {id: row.id, slug: row.slug, name: row.name, arch: row.is_of__cpu_architecture[0]?.slug ?? ''}
}

export async function listDeviceTypes(client: FleetClient): Promise<DeviceType[]> {
  const rows = await client.pine.get<DeviceTypeRow>('device_type', {...QUERY, $orderby: 'slug asc'})
  return rows.map(toDeviceType)
}

export async function resolveDeviceType(client: FleetClient, slug: string): Promise<DeviceType> {
  const rows = await client.pine.get<DeviceTypeRow>('device_type', {...QUERY, $filter: `slug eq ${odataValue(slug)}`})
  if (rows.length === 0) throw new UsageError(`invalid device type "${slug}" — run "flotilla device-type list" to see the valid ones`)
  return toDeviceType(rows[0])
}
