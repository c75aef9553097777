import type {FleetClient} from '../sdk/client.js'
import type {Device} from '../sdk/devices.js'
import {canPrompt, promptChoice} from './prompts.js'

/**
 * The online device a `ssh`/`tunnel` argument names: a UUID (or prefix) that must be online, or a fleet whose online
 * devices are offered on a terminal (without one, the error lists some and says how to name one).
 * An address of a device on the local network is not resolved here: the caller decides what it means.
 */
export async function resolveOnlineDevice(client: FleetClient, argument: {kind: 'device' | 'fleet'; reference: string}): Promise<Device> {
  const {fleetNeedsDeviceError, getOnlineDevice, listOnlineDevices} = await import('../sdk/device-ssh.js')
  if (argument.kind === 'device') return getOnlineDevice(client, argument.reference)
  const devices = await listOnlineDevices(client, argument.reference)
  if (!canPrompt()) throw fleetNeedsDeviceError(argument.reference, devices)
  const uuid = await promptChoice(
    `Which device of ${argument.reference}?`,
    devices.map((device) => ({name: `${device.uuid.slice(0, 7)}  ${device.device_name}  ${device.device_type}`, value: device.uuid})),
    'device',
  )
  return devices.find((device) => device.uuid === uuid) as Device
}
