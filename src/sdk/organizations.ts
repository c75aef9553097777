import type {FleetClient} from './client.js'

export interface Organization {
  id: number
  name: string
  handle: string
}

export async function myOrganizations(client: FleetClient): Promise<Organization[]> {
  return client.pine.get<Organization>('organization', {$select: ['id', 'name', 'handle'], $orderby: 'handle asc'})
}
