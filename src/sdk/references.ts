import {UsageError} from '../errors.js'

const FULL_UUID = /^[\da-f]{32}$|^[\da-f]{62}$/
const UUID_PREFIX = /^[\da-f]{7,}$/

/** A device is named by its full UUID or a unique prefix of at least 7 hex characters. */
export function parseDeviceReference(reference: string): {uuid: string; exact: boolean} {
  const uuid = reference.trim().toLowerCase()
  if (FULL_UUID.test(uuid)) return {uuid, exact: true}
  if (UUID_PREFIX.test(uuid)) return {uuid, exact: false}
  throw new UsageError(`"${reference}" is not a device UUID — give the full UUID or at least its first 7 characters`)
}

/** A fleet is named by its slug (`org/name`) or, when unambiguous, its name. */
export function parseFleetReference(reference: string): {slug: string} | {name: string} {
  const trimmed = reference.trim()
  if (trimmed === '') throw new UsageError('a fleet name or slug is required')
  return trimmed.includes('/') ? {slug: trimmed.toLowerCase()} : {name: trimmed}
}
