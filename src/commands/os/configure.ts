import {readFile} from 'node:fs/promises'
import path from 'node:path'

import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {ExpectedError, UsageError} from '../../errors.js'

async function readInput(file: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (error) {
    throw new ExpectedError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`)
  }
}

export default class OsConfigure extends FlotillaCommand {
  static override summary = 'Write config.json and network settings into an OS image'
  static override description =
    'Writes config.json (and NetworkManager connection files under system-connections/) into the FAT boot partition of a raw image, without mounting it. ' +
    'The config comes from the fleet server (--fleet) or from a file (--config); the other flags change it.'

  static override examples = [
    '<%= config.bin %> os configure balena.img --fleet myorg/sensors',
    '<%= config.bin %> os configure balena.img --fleet sensors --config-network wifi --config-wifi-ssid home --config-wifi-key s3cretpass',
    '<%= config.bin %> os configure balena.img --config config.json --initial-device-name kitchen',
  ]

  static override args = {image: Args.string({required: true, description: 'raw OS image (.img) to configure in place'})}
  static override flags = {
    fleet: Flags.string({char: 'f', description: 'fleet (slug or name) to generate config.json for'}),
    device: Flags.string({description: 'UUID of a device registered in the fleet: the image carries its identity'}),
    'device-type': Flags.string({description: 'device type slug (default: the fleet\'s)'}),
    version: Flags.string({description: 'OS version of the image, passed to the server'}),
    config: Flags.string({description: 'use this config.json instead of generating one'}),
    dev: Flags.boolean({description: 'development mode (open local API and SSH on the device)', allowNo: false}),
    'config-network': Flags.option({options: ['ethernet', 'wifi'] as const, description: 'network the device uses'})(),
    'config-wifi-ssid': Flags.string({description: 'WiFi network name'}),
    'config-wifi-key': Flags.string({description: 'WiFi passphrase (WPA)'}),
    'initial-device-name': Flags.string({description: 'name the device registers with'}),
    'config-app-update-poll-interval': Flags.integer({description: 'minutes between checks for a new release'}),
    'system-connection': Flags.string({multiple: true, description: 'NetworkManager connection file to copy into system-connections/'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(OsConfigure)
    if (!flags.fleet && !flags.config) throw new UsageError('give --fleet to generate config.json, or --config with a config.json file')
    if (flags.fleet && flags.config) throw new UsageError('give either --fleet or --config, not both')
    if (flags.device && !flags.fleet) throw new UsageError('--device needs --fleet')
    const {applyDeviceConfigOptions, bootFilesFor, validateDeviceConfigOptions} = await import('../../image/device-config.js')
    const options = {
      developmentMode: flags.dev ? true : undefined,
      appUpdatePollIntervalMinutes: flags['config-app-update-poll-interval'],
      initialDeviceName: flags['initial-device-name'],
      network: flags['config-network'],
      wifiSsid: flags['config-wifi-ssid'],
      wifiKey: flags['config-wifi-key'],
    }
    validateDeviceConfigOptions(options)
    const connections = await Promise.all((flags['system-connection'] ?? []).map(async (file) => ({name: path.basename(file), content: await readInput(file)})))
    const {describeDiskTarget} = await import('../../image/disk.js')
    await describeDiskTarget(args.image)

    let config
    if (flags.config) {
      const {parseConfigJson} = await import('../../protocol/config-json.js')
      config = applyDeviceConfigOptions(parseConfigJson((await readInput(flags.config)).toString('utf8'), flags.config), options)
    } else {
      const {generateDeviceConfig} = await import('../../sdk/config.js')
      config = await generateDeviceConfig(await this.sdk(), {...options, fleet: flags.fleet!, device: flags.device, deviceType: flags['device-type'], version: flags.version})
    }

    const files = bootFilesFor(config, connections)
    const {writeBootFiles} = await import('../../image/boot-files.js')
    const partition = await writeBootFiles(args.image, files)
    this.output.result({image: args.image, partition: partition.index, label: partition.label ?? null, files: files.map((file) => file.path)}, () =>
      this.output.success(`configured ${args.image}: wrote ${files.map((file) => file.path).join(', ')} to partition ${partition.index}${partition.label ? ` (${partition.label})` : ''}`),
    )
  }
}
