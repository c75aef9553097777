import {Flags} from '@oclif/core'

import {UsageError} from '../errors.js'
import type {FleetClient} from '../sdk/client.js'

/** `--fleet` or `--device`, exactly one: who a variable or tag belongs to. */
export const ownerFlags = {
  fleet: Flags.string({char: 'f', description: 'fleet slug (org/name) or name', exclusive: ['device']}),
  device: Flags.string({char: 'd', description: 'device UUID (or a unique prefix of 7+ characters)', exclusive: ['fleet']}),
}

export type Owner = {fleet: import('../sdk/fleets.js').Fleet} | {device: import('../sdk/devices.js').Device}

export async function resolveOwner(client: FleetClient, flags: {fleet?: string; device?: string}): Promise<Owner> {
  if (flags.fleet) {
    const {getFleet} = await import('../sdk/fleets.js')
    return {fleet: await getFleet(client, flags.fleet)}
  }

  if (flags.device) {
    const {getDevice} = await import('../sdk/devices.js')
    return {device: await getDevice(client, flags.device)}
  }

  throw new UsageError('say whose: add --fleet <fleet> or --device <uuid>')
}

export function describeOwner(owner: Owner): string {
  return 'fleet' in owner ? `fleet ${owner.fleet.slug}` : `device ${owner.device.uuid.slice(0, 7)}`
}
