import {Flags} from '@oclif/core'

import type {GenerateDeviceConfigOptions} from '../sdk/config.js'

/**
 * What a device needs for its first boot, shared by `config generate` and `os configure`. Each flag has
 * balena-cli's `config generate` name, and its `os configure` name (`--config-network`…) as an alias, so
 * scripts written for either command work with both.
 */
export const deviceConfigFlags = {
  fleet: Flags.string({char: 'f', description: 'fleet slug (org/name) or name (default with --device: the device\'s)'}),
  device: Flags.string({description: 'UUID of a registered device: the config carries its identity and a new device key'}),
  'device-type': Flags.string({aliases: ['deviceType'], description: "device type slug (default: the device's or the fleet's)"}),
  version: Flags.string({description: 'balenaOS version of the image, such as 6.5.39+rev1 (default: the newest the server publishes for the device type)'}),
  dev: Flags.boolean({description: 'development mode: the local API and SSH of the agent open on the device'}),
  network: Flags.option({options: ['ethernet', 'wifi'] as const, aliases: ['config-network'], description: 'network the device uses'})(),
  wifiSsid: Flags.string({aliases: ['config-wifi-ssid', 'wifi-ssid'], description: 'WiFi network name, with --network wifi'}),
  wifiKey: Flags.string({aliases: ['config-wifi-key', 'wifi-key'], description: 'WiFi passphrase (WPA, 8 to 63 characters), with --network wifi'}),
  appUpdatePollInterval: Flags.integer({
    aliases: ['app-update-poll-interval', 'config-app-update-poll-interval'],
    description: 'minutes between checks for a new release (default 10)',
  }),
  'initial-device-name': Flags.string({description: 'name the device registers with'}),
  'generate-device-api-key': Flags.boolean({description: 'with --device: a new device key (what a device config always gets; accepted for balena-cli scripts)'}),
  'provisioning-key-name': Flags.string({description: 'name of the provisioning key made for new devices'}),
  'provisioning-key-expiry-date': Flags.string({description: 'expiry date of the provisioning key made for new devices (YYYY-MM-DD)'}),
}

type DeviceConfigFlagValues = {
  [K in keyof typeof deviceConfigFlags]?: K extends 'dev' | 'generate-device-api-key' ? boolean : K extends 'appUpdatePollInterval' ? number : string
}

/** The library's options from the parsed flags. */
export function deviceConfigOptionsFrom(flags: DeviceConfigFlagValues): GenerateDeviceConfigOptions {
  return {
    fleet: flags.fleet,
    device: flags.device,
    deviceType: flags['device-type'],
    version: flags.version,
    developmentMode: flags.dev ? true : undefined,
    // As balena-cli's os configure: a WiFi name alone means a WiFi network.
    network: (flags.network ?? (flags.wifiSsid ? 'wifi' : undefined)) as GenerateDeviceConfigOptions['network'],
    wifiSsid: flags.wifiSsid,
    wifiKey: flags.wifiKey,
    appUpdatePollIntervalMinutes: flags.appUpdatePollInterval,
    initialDeviceName: flags['initial-device-name'] === '' ? undefined : flags['initial-device-name'],
    generateDeviceApiKey: flags['generate-device-api-key'],
    provisioningKeyName: flags['provisioning-key-name'],
    provisioningKeyExpiryDate: flags['provisioning-key-expiry-date'],
  }
}
