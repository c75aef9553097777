import {ExpectedError} from '../errors.js'

/**
 * A device's config.json: how it finds the fleet server and proves who it is. A fresh device carries a
 * provisioning key (`apiKey`); a registered one carries `uuid`, `deviceId`, `deviceApiKey` and `registered_at`.
 */
export interface ConfigJson {
  apiEndpoint: string
  applicationId?: number
  deviceType?: string
  userId?: number
  /** Milliseconds between target state polls. */
  appUpdatePollInterval?: number
  listenPort?: number
  vpnPort?: number
  vpnEndpoint?: string
  registryEndpoint?: string
  deltaEndpoint?: string
  /** The provisioning key. */
  apiKey?: string
  uuid?: string
  deviceId?: number
  deviceApiKey?: string
  /** Unix seconds. */
  registered_at?: number
  developmentMode?: boolean
  wifiSsid?: string
  wifiKey?: string
  initialDeviceName?: string
  os?: {sshKeys?: string[]}
  /** [flotilla] the server's well-known document, so the agent knows the SSH link port. */
  flotillaEndpoints?: {
    api: string
    builder: string
    ssh: {host: string; port: number; hostKey?: string}
    tunnel: string
    registry: string | null
    version?: string
  }
  [key: string]: unknown
}

/** A config.json whose device is registered: it can talk to the server with its own key. */
export type RegisteredConfigJson = ConfigJson & {uuid: string; deviceApiKey: string}

export function isRegistered(config: ConfigJson): config is RegisteredConfigJson {
  return typeof config.uuid === 'string' && typeof config.deviceApiKey === 'string'
}

const nonEmptyString = (value: unknown): value is string => typeof value === 'string' && value !== ''

/** Parses config.json text, with one error line naming what is wrong and where. */
export function parseConfigJson(text: string, source = 'config.json'): ConfigJson {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new ExpectedError(`${source} is not valid JSON (${(error as Error).message})`)
  }

  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ExpectedError(`${source} is not a JSON object`)
  const config = parsed as Record<string, unknown>
  if (!nonEmptyString(config.apiEndpoint)) throw new ExpectedError(`${source} lacks "apiEndpoint"`)
  const canRegister = nonEmptyString(config.apiKey)
  const isDevice = nonEmptyString(config.uuid) && nonEmptyString(config.deviceApiKey)
  if (!canRegister && !isDevice) {
    throw new ExpectedError(`${source} lacks credentials: it needs "apiKey" (a provisioning key) or "uuid" and "deviceApiKey"`)
  }

  if (canRegister && !isDevice && (typeof config.applicationId !== 'number' || !nonEmptyString(config.deviceType))) {
    throw new ExpectedError(`${source} has a provisioning key but lacks "applicationId" or "deviceType" to register with`)
  }

  return config as ConfigJson
}
