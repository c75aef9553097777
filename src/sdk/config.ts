import {ExpectedError, UsageError} from '../errors.js'
import {applyDeviceConfigOptions, type DeviceConfigOptions, validateDeviceConfigOptions} from '../image/device-config.js'
import type {ConfigJson} from '../protocol/config-json.js'
import {isConfigurableOsVersion, latestOf, NEWEST_UNSUPPORTED_OS_VERSION} from '../protocol/os-version.js'
import type {FleetClient} from './client.js'
import {type Device, getDevice} from './devices.js'
import {getFleet} from './fleets.js'
import {listOsVersions} from './os-images.js'

/**
 * The OS version a config is made for when neither the user nor the server names one: a current balenaOS, so a
 * balena API (which refuses versions up to 1.2.0, and gives older ones user keys instead of provisioning keys) takes it.
 */
export const CURRENT_OS_VERSION = '6.5.39+rev1'

export interface GenerateDeviceConfigOptions extends DeviceConfigOptions {
  /** Fleet slug or name; may be left out with `device` (the device's fleet). */
  fleet?: string
  deviceType?: string
  /** A device already registered: the config then carries its own new key instead of a provisioning key. */
  device?: string
  /** balena-cli's `--generate-device-api-key`: with `device`, a new device key (what a device config always gets). */
  generateDeviceApiKey?: boolean
  /** The balenaOS version the image runs (default: the newest the server publishes for the device type). */
  version?: string
  /** Name and expiry (a date, `YYYY-MM-DD` or ISO) of the provisioning key the server makes for a new device. */
  provisioningKeyName?: string
  provisioningKeyExpiryDate?: string
}

/** Refuses options that contradict each other before anything is asked of the server. */
export function validateGenerateOptions(options: GenerateDeviceConfigOptions): void {
  validateDeviceConfigOptions(options)
  if (!options.fleet && !options.device) throw new UsageError('give --fleet (a config for new devices of a fleet) or --device (a config for a registered device)')
  if (options.device && (options.provisioningKeyName !== undefined || options.provisioningKeyExpiryDate !== undefined)) {
    throw new UsageError('--provisioning-key-name and --provisioning-key-expiry-date are for new devices: leave out --device')
  }

  if (options.generateDeviceApiKey && !options.device) throw new UsageError('--generate-device-api-key needs --device (a new device gets a provisioning key)')
  const expiry = options.provisioningKeyExpiryDate
  if (expiry !== undefined && (!/^\d{4}-\d{2}-\d{2}/.test(expiry) || Number.isNaN(Date.parse(expiry)))) {
    throw new UsageError(`--provisioning-key-expiry-date must be a date such as 2030-12-31, not "${expiry}"`)
  }

  if (options.version !== undefined) normalizeOsVersion(options.version, options.developmentMode)
}

/** `v2.12.7` → `2.12.7`; refuses what a balena API refuses, and `--dev` with a production image's version. */
export function normalizeOsVersion(version: string, developmentMode?: boolean): string {
  const normalized = version.trim().replace(/^v(?=\d)/, '')
  if (!isConfigurableOsVersion(normalized)) {
    throw new UsageError(`--version must be a balenaOS version newer than ${NEWEST_UNSUPPORTED_OS_VERSION}, such as ${CURRENT_OS_VERSION}, not "${version}"`)
  }

  if (developmentMode && /\bprod\b/.test(normalized)) throw new UsageError(`--dev does not go with the production OS version "${version}"`)
  return normalized
}

/** The newest OS version (not a pre-release) the server publishes for a device type, else a current one. */
export async function defaultOsVersion(client: FleetClient, deviceType: string): Promise<string> {
  try {
    const versions = await listOsVersions(client, deviceType)
    const newest = latestOf(versions, (release) => release.raw_version)?.raw_version
    if (newest && isConfigurableOsVersion(newest)) return newest
  } catch (error) {
    if (!(error instanceof ExpectedError)) throw error
  }

  return CURRENT_OS_VERSION
}

/**
 * A config.json from `POST /download-config` (which also makes the provisioning key, named and dated as asked),
 * with the local options applied; for a registered device, with its uuid and a new device key instead.
 */
export async function generateDeviceConfig(client: FleetClient, options: GenerateDeviceConfigOptions): Promise<ConfigJson> {
  validateGenerateOptions(options)
  const device: Device | undefined = options.device ? await getDevice(client, options.device) : undefined
  const fleet = await getFleet(client, options.fleet ?? device!.fleet)
  if (device && device.fleet !== fleet.slug) throw new UsageError(`device ${device.uuid.slice(0, 7)} is in fleet ${device.fleet}, not ${fleet.slug}`)
  const deviceType = options.deviceType ?? device?.device_type ?? fleet.device_type
  const version = options.version === undefined ? await defaultOsVersion(client, deviceType) : normalizeOsVersion(options.version, options.developmentMode)
  const body: Record<string, unknown> = {appId: fleet.id, version, deviceType, network: options.network ?? 'ethernet'}
  if (options.wifiSsid) body.wifiSsid = options.wifiSsid
  if (options.wifiKey) body.wifiKey = options.wifiKey
  if (options.appUpdatePollIntervalMinutes !== undefined) body.appUpdatePollInterval = options.appUpdatePollIntervalMinutes
  if (options.developmentMode !== undefined) body.developmentMode = options.developmentMode
  if (options.provisioningKeyName !== undefined) body.provisioningKeyName = options.provisioningKeyName
  if (options.provisioningKeyExpiryDate !== undefined) body.provisioningKeyExpiryDate = options.provisioningKeyExpiryDate
  let config = await client.request<ConfigJson>('POST', '/download-config', {json: body})
  if (device) {
    const deviceApiKey = await client.request<string>('POST', `/api-key/device/${device.id}/device-key`, {json: {name: 'flotilla config generate'}})
    config = {...config, uuid: device.uuid, deviceId: device.id, deviceApiKey, registered_at: Math.floor(Date.now() / 1000)}
    delete config.apiKey
  }

  return applyDeviceConfigOptions(config, options)
}
