import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class ConfigWrite extends FlotillaCommand {
  static override summary = 'Set one key of the config.json of a flashed drive or an OS image'
  static override description = 'Nested keys are written with dots (os.network.hostname). A key whose current value is a number or true/false keeps that type; other values are stored as strings.'
  static override examples = [
    '<%= config.bin %> config write --drive /dev/sdb hostname kitchen-pi',
    '<%= config.bin %> config write --drive balena.img appUpdatePollInterval 600000',
  ]

  static override args = {
    key: Args.string({required: true, description: 'key to set (dots for nested objects)'}),
    value: Args.string({required: true, description: 'new value'}),
  }

  static override flags = {
    drive: Flags.string({char: 'd', required: true, description: 'block device (/dev/sdb) or image file holding the boot partition'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ConfigWrite)
    const {readConfigJson, setConfigValue, writeConfigJson} = await import('../../image/config-json-file.js')
    const config = setConfigValue(await readConfigJson(flags.drive), args.key, args.value)
    await writeConfigJson(flags.drive, config)
    this.output.result({key: args.key, value: config[args.key] ?? args.value, drive: flags.drive}, () => this.output.success(`set ${args.key} in config.json on ${flags.drive}`))
  }
}
