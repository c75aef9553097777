import {readFile} from 'node:fs/promises'
import path from 'node:path'

import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {deviceConfigFlags, deviceConfigOptionsFrom} from '../../cli/device-config-flags.js'
import {ExpectedError, UsageError} from '../../errors.js'

async function readInput(file: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (error) {
    throw new ExpectedError(`cannot read ${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message}`)
  }
}

/** What only a generated config can take: a config.json given with --config is already made. */
const GENERATION_ONLY = ['fleet', 'device', 'device-type', 'version', 'generate-device-api-key', 'provisioning-key-name', 'provisioning-key-expiry-date'] as const

export default class OsConfigure extends FlotillaCommand {
  static override summary = 'Write config.json and network settings into an OS image'
  static override description =
    'Writes config.json (and NetworkManager connection files under system-connections/) into the FAT boot partition of a raw image, without mounting it. ' +
    'The config comes from the fleet server (--fleet or --device, as "config generate" makes it) or from a file (--config); the network, interval, name and mode flags change it. ' +
    "Flags take the names of either of balena-cli's commands: --network or --config-network, --wifiSsid or --config-wifi-ssid, --wifiKey or --config-wifi-key, --appUpdatePollInterval or --config-app-update-poll-interval."

  static override examples = [
    '<%= config.bin %> os configure balena.img --fleet myorg/sensors',
    '<%= config.bin %> os configure balena.img --fleet sensors --config-network wifi --config-wifi-ssid home --config-wifi-key s3cretpass',
    '<%= config.bin %> os configure balena.img --device 7cf02a6 --version 6.5.39+rev1',
    '<%= config.bin %> os configure balena.img --config config.json --initial-device-name kitchen',
  ]

  static override args = {image: Args.string({required: true, description: 'raw OS image (.img) to configure in place'})}
  static override flags = {
    ...deviceConfigFlags,
    config: Flags.string({description: 'use this config.json instead of generating one'}),
    'system-connection': Flags.string({char: 'c', multiple: true, description: 'NetworkManager connection file to copy into system-connections/'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(OsConfigure)
    const options = deviceConfigOptionsFrom(flags)
    const {applyDeviceConfigOptions, bootFilesFor, validateDeviceConfigOptions} = await import('../../image/device-config.js')
    if (flags.config) {
      const given = GENERATION_ONLY.filter((name) => flags[name] !== undefined && flags[name] !== false)
      if (given.length > 0) throw new UsageError(`--config takes a finished config.json: leave out --${given.join(', --')}`)
      validateDeviceConfigOptions(options)
    } else {
      const {validateGenerateOptions} = await import('../../sdk/config.js')
      validateGenerateOptions(options)
    }

    const connections = await Promise.all((flags['system-connection'] ?? []).map(async (file) => ({name: path.basename(file), content: await readInput(file)})))
    const {describeDiskTarget} = await import('../../image/disk.js')
    await describeDiskTarget(args.image)

    let config
    if (flags.config) {
      const {parseConfigJson} = await import('../../protocol/config-json.js')
      config = applyDeviceConfigOptions(parseConfigJson((await readInput(flags.config)).toString('utf8'), flags.config), options)
    } else {
      const {generateDeviceConfig} = await import('../../sdk/config.js')
      config = await generateDeviceConfig(await this.sdk(), options)
    }

    const files = bootFilesFor(config, connections)
    const {writeBootFiles} = await import('../../image/boot-files.js')
    const partition = await writeBootFiles(args.image, files)
    this.output.result({image: args.image, partition: partition.index, label: partition.label ?? null, files: files.map((file) => file.path)}, () =>
      this.output.success(`configured ${args.image}: wrote ${files.map((file) => file.path).join(', ')} to partition ${partition.index}${partition.label ? ` (${partition.label})` : ''}`),
    )
  }
}
