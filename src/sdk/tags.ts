import {UsageError} from '../errors.js'
import type {FleetClient} from './client.js'
import type {Device} from './devices.js'
import type {Fleet} from './fleets.js'
import {odataValue} from './pine.js'

export type TagOwner = {fleet: Fleet} | {device: Device}

export interface Tag {
  id: number
  tag_key: string
  value: string
}

function resourceOf(owner: TagOwner): {resource: string; parentField: string; parentId: number} {
  return 'fleet' in owner
    ? {resource: 'application_tag', parentField: 'application', parentId: owner.fleet.id}
    : {resource: 'device_tag', parentField: 'device', parentId: owner.device.id}
}

export async function listTags(client: FleetClient, owner: TagOwner): Promise<Tag[]> {
  const {resource, parentField, parentId} = resourceOf(owner)
  return client.pine.get<Tag>(resource, {
    $select: ['id', 'tag_key', 'value'],
    $filter: `${parentField} eq ${parentId}`,
    $orderby: 'tag_key asc',
  })
}

export async function setTag(client: FleetClient, owner: TagOwner, key: string, value: string): Promise<void> {
  if (key.trim() === '' || /\s/.test(key)) throw new UsageError(`invalid tag key "${key}" — it must be non-empty and without spaces`)
  const {resource, parentField, parentId} = resourceOf(owner)
  await client.pine.upsert(resource, {[parentField]: parentId, tag_key: key}, {value})
}

export async function removeTag(client: FleetClient, owner: TagOwner, key: string): Promise<boolean> {
  const {resource, parentField, parentId} = resourceOf(owner)
  const filter = `${parentField} eq ${parentId} and tag_key eq ${odataValue(key)}`
  const existing = await client.pine.get<Tag>(resource, {$select: ['id'], $filter: filter})
  if (existing.length === 0) return false
  await client.pine.delete(resource, existing[0].id)
  return true
}
