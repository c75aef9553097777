import {randomBytes, randomInt} from 'node:crypto'

import {ApiError, ExpectedError} from '../errors.js'
import {type ConfigJson, isRegistered, type RegisteredConfigJson} from '../protocol/config-json.js'
import {FleetClient} from '../sdk/client.js'
import {saveConfig} from './config.js'

const KEY_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

export function generateDeviceUuid(): string {
  return randomBytes(16).toString('hex')
}

/** 32 random alphanumerics, the shape of every balena API key. */
export function generateDeviceKey(): string {
  return Array.from({length: 32}, () => KEY_ALPHABET[randomInt(KEY_ALPHABET.length)]).join('')
}

export interface DeviceFacts {
  supervisorVersion?: string
  osVersion?: string
  osVariant?: string
  macAddress?: string
}

export interface ProvisioningOptions extends DeviceFacts {
  clientName?: string
  now?: () => Date
}

interface RegisterAnswer {
  id: number
  uuid: string
  api_key?: string
}

interface WhoamiAnswer {
  actorType?: string
  actorTypeId?: number
  uuid?: string
}

/** A config that still has to register: it holds a provisioning key and no registration date. */
export function needsRegistration(config: ConfigJson): boolean {
  return typeof config.apiKey === 'string' && config.registered_at === undefined
}

/**
 * Registers the device with its provisioning key when config.json has not done it yet, and stores its
 * identity in config.json. The uuid and device key are chosen and saved before asking, so a crash after
 * the server said yes finds them again; a later `409` for that uuid is then checked with the saved key.
 */
export async function ensureRegistered(configPath: string, config: ConfigJson, options: ProvisioningOptions = {}): Promise<RegisteredConfigJson> {
  if (!needsRegistration(config)) {
    if (!isRegistered(config)) throw new ExpectedError(`${configPath} lacks "uuid" and "deviceApiKey" and has no provisioning key to register with`)
    return config
  }

  const pending: RegisteredConfigJson = {...config, uuid: config.uuid ?? generateDeviceUuid(), deviceApiKey: config.deviceApiKey ?? generateDeviceKey()}
  if (pending.uuid !== config.uuid || pending.deviceApiKey !== config.deviceApiKey) await saveConfig(configPath, pending)

  const provisioning = new FleetClient({remote: pending.apiEndpoint, token: pending.apiKey, clientName: options.clientName, retries: 0})
  let deviceId: number
  try {
    const answer = await provisioning.request<RegisterAnswer>('POST', '/device/register', {
      json: {
        application: pending.applicationId,
        device_type: pending.deviceType,
        uuid: pending.uuid,
        api_key: pending.deviceApiKey,
        ...(pending.userId === undefined ? {} : {user: pending.userId}),
        ...(options.supervisorVersion ? {supervisor_version: options.supervisorVersion} : {}),
        ...(options.osVersion ? {os_version: options.osVersion} : {}),
        ...(options.osVariant ? {os_variant: options.osVariant} : {}),
        ...(options.macAddress ? {mac_address: options.macAddress} : {}),
      },
    })
    deviceId = answer.id
  } catch (error) {
    if (!(error instanceof ApiError && error.statusCode === 409)) throw error
    deviceId = await deviceIdOfEarlierRegistration(pending)
  }

  const {apiKey: _provisioningKey, ...rest} = pending
  const registered: RegisteredConfigJson = {...rest, deviceId, registered_at: Math.floor((options.now?.() ?? new Date()).getTime() / 1000)}
  await saveConfig(configPath, registered)
  return registered
}

async function deviceIdOfEarlierRegistration(config: RegisteredConfigJson): Promise<number> {
  const device = new FleetClient({remote: config.apiEndpoint, token: config.deviceApiKey, retries: 0})
  const whoami = await device.request<WhoamiAnswer>('GET', '/actor/v1/whoami').catch(() => undefined)
  if (whoami?.actorType === 'device' && whoami.uuid === config.uuid && typeof whoami.actorTypeId === 'number') return whoami.actorTypeId
  throw new ExpectedError(`the server already has a device with uuid ${config.uuid} and it is not this one — remove "uuid" and "deviceApiKey" from config.json to register anew`)
}

export interface RegistrationRetryOptions {
  /** Sleeps between attempts; resolves early when the agent stops. */
  wait(ms: number): Promise<void>
  stopped(): boolean
  log(message: string): void
}

/** The pause after the n-th failed registration: 1 s, doubled at each failure, up to 5 min. */
export function registrationRetryDelayMs(failures: number): number {
  return Math.min(5 * 60_000, 1000 * 2 ** failures)
}

/** Registers (when needed) until it works, with a growing pause after each failure; undefined once the agent stops. */
export async function registerWithRetry(register: () => Promise<RegisteredConfigJson>, options: RegistrationRetryOptions): Promise<RegisteredConfigJson | undefined> {
  for (let failures = 0; !options.stopped(); failures++) {
    try {
      return await register()
    } catch (error) {
      options.log(`registration failed: ${(error as Error).message}`)
      await options.wait(registrationRetryDelayMs(failures))
    }
  }

  return undefined
}
