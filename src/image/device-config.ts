import type {ConfigJson} from '../protocol/config-json.js'
import {UsageError} from '../errors.js'
import type {BootFile} from './boot-files.js'

/** What `os configure` adds to or changes in a config.json, whether it came from the server or from a file. */
export interface DeviceConfigOptions {
  developmentMode?: boolean
  /** Minutes, as users give it; config.json holds milliseconds. */
  appUpdatePollIntervalMinutes?: number
  initialDeviceName?: string
  network?: 'ethernet' | 'wifi'
  wifiSsid?: string
  wifiKey?: string
}

const WIFI_CONNECTION_NAME = 'resin-wifi'

/** Checks the options together; messages name the flags of `config generate` and `os configure`, which share them. */
export function validateDeviceConfigOptions(options: DeviceConfigOptions): void {
  if (options.network === 'wifi' && !options.wifiSsid) throw new UsageError('--network wifi needs --wifiSsid (the WiFi network name)')
  if (options.network !== 'wifi' && (options.wifiSsid || options.wifiKey)) throw new UsageError('--wifiSsid and --wifiKey need --network wifi')
  if (options.wifiKey !== undefined && options.wifiKey.length > 0 && (options.wifiKey.length < 8 || options.wifiKey.length > 63)) {
    throw new UsageError('--wifiKey must be 8 to 63 characters (a WPA passphrase)')
  }

  const interval = options.appUpdatePollIntervalMinutes
  if (interval !== undefined && (!Number.isFinite(interval) || interval < 1)) throw new UsageError('--appUpdatePollInterval is in minutes and must be at least 1')
}

/** The config.json with the options applied; the input is left as it was. */
export function applyDeviceConfigOptions(config: ConfigJson, options: DeviceConfigOptions): ConfigJson {
  validateDeviceConfigOptions(options)
  const result: ConfigJson = {...config}
  if (options.developmentMode !== undefined) result.developmentMode = options.developmentMode
  if (options.appUpdatePollIntervalMinutes !== undefined) result.appUpdatePollInterval = Math.round(options.appUpdatePollIntervalMinutes * 60_000)
  if (options.initialDeviceName !== undefined) result.initialDeviceName = options.initialDeviceName
  if (options.network === 'wifi') {
    result.wifiSsid = options.wifiSsid
    if (options.wifiKey) result.wifiKey = options.wifiKey
    else delete result.wifiKey
  }

  return result
}

/** The NetworkManager keyfile balenaOS reads from `system-connections/resin-wifi` on the boot partition. */
export function wifiConnectionFile(ssid: string, key?: string): string {
  const lines = ['[connection]', `id=${WIFI_CONNECTION_NAME}`, 'type=wifi', '', '[wifi]', 'hidden=true', 'mode=infrastructure', `ssid=${ssid}`, '']
  if (key) lines.push('[wifi-security]', 'auth-alg=open', 'key-mgmt=wpa-psk', `psk=${key}`, '')
  lines.push('[ipv4]', 'method=auto', '', '[ipv6]', 'addr-gen-mode=stable-privacy', 'method=auto', '')
  return lines.join('\n')
}

/** Everything `os configure` writes to the boot partition: config.json, the WiFi connection, extra connection files. */
export function bootFilesFor(config: ConfigJson, systemConnections: Array<{name: string; content: Buffer}> = []): BootFile[] {
  const files: BootFile[] = [{path: 'config.json', content: JSON.stringify(config)}]
  if (typeof config.wifiSsid === 'string' && config.wifiSsid !== '') {
    files.push({path: `system-connections/${WIFI_CONNECTION_NAME}`, content: wifiConnectionFile(config.wifiSsid, typeof config.wifiKey === 'string' ? config.wifiKey : undefined)})
  }

  for (const connection of systemConnections) {
    if (!/^[\w.@+-]+$/.test(connection.name)) throw new UsageError(`system connection file name "${connection.name}" has characters a FAT file name cannot hold`)
    files.push({path: `system-connections/${connection.name}`, content: connection.content})
  }

  return files
}
