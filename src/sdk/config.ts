import type {ConfigJson} from '../protocol/config-json.js'
import {applyDeviceConfigOptions, type DeviceConfigOptions} from '../image/device-config.js'
import type {FleetClient} from './client.js'
import {getDevice} from './devices.js'
import {getFleet} from './fleets.js'

export interface GenerateDeviceConfigOptions extends DeviceConfigOptions {
  /** Fleet slug or name. */
  fleet: string
  deviceType?: string
  /** A device already registered in the fleet: the config then carries its own key instead of a provisioning key. */
  device?: string
  /** The OS version the image runs, as the server may shape config.json by it. */
  version?: string
}

/**
 * A config.json for a new device of a fleet, from `POST /download-config` (which also makes a provisioning key),
 * with the local options applied; for a pre-registered device, with its uuid and a new device key instead.
 */
export async function generateDeviceConfig(client: FleetClient, options: GenerateDeviceConfigOptions): Promise<ConfigJson> {
  const fleet = await getFleet(client, options.fleet)
  const body: Record<string, unknown> = {
    appId: fleet.id,
    version: options.version ?? 'v1.0.0',
    deviceType: options.deviceType ?? fleet.device_type,
    network: options.network ?? 'ethernet',
  }
  if (options.wifiSsid) body.wifiSsid = options.wifiSsid
  if (options.wifiKey) body.wifiKey = options.wifiKey
  if (options.appUpdatePollIntervalMinutes !== undefined) body.appUpdatePollInterval = options.appUpdatePollIntervalMinutes
  if (options.developmentMode !== undefined) body.developmentMode = options.developmentMode
  let config = await client.request<ConfigJson>('POST', '/download-config', {json: body})
  if (options.device) {
    const device = await getDevice(client, options.device)
    const deviceApiKey = await client.request<string>('POST', `/api-key/device/${device.id}/device-key`, {json: {name: 'flotilla os configure'}})
    config = {...config, uuid: device.uuid, deviceId: device.id, deviceApiKey, registered_at: Math.floor(Date.now() / 1000)}
    delete config.apiKey
  }

  return applyDeviceConfigOptions(config, options)
}
