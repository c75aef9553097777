import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class ConfigGenerate extends FlotillaCommand {
  static override summary = 'Generate a config.json for a device of a fleet'
  static override description =
    "Without --device, the config carries a provisioning key: the agent registers itself on first start. With --device, it carries that registered device's own identity and a new device key. The file is written atomically with mode 0600: it holds a secret."

  static override examples = [
    '<%= config.bin %> config generate --fleet myorg/sensors -o config.json',
    '<%= config.bin %> config generate --fleet sensors --device 7cf02a6 --dev -o config.json',
    '<%= config.bin %> config generate --fleet sensors --appUpdatePollInterval 1 --json',
  ]

  static override flags = {
    fleet: Flags.string({char: 'f', required: true, description: 'fleet slug (org/name) or name'}),
    device: Flags.string({description: 'UUID of a registered device (default: a provisioning key for a new device)'}),
    deviceType: Flags.string({aliases: ['device-type'], description: "device type slug (default: the fleet's)"}),
    dev: Flags.boolean({description: 'development mode: the local API and SSH of the agent open on the device'}),
    appUpdatePollInterval: Flags.integer({aliases: ['app-update-poll-interval'], description: 'minutes between checks for a new release'}),
    output: Flags.string({char: 'o', description: 'file to write (default: print it on stdout)'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ConfigGenerate)
    const {generateDeviceConfig} = await import('../../sdk/config.js')
    const config = await generateDeviceConfig(await this.sdk(), {
      fleet: flags.fleet,
      device: flags.device,
      deviceType: flags.deviceType,
      developmentMode: flags.dev ? true : undefined,
      appUpdatePollIntervalMinutes: flags.appUpdatePollInterval,
    })
    const text = JSON.stringify(config, null, 2) + '\n'
    if (!flags.output) {
      this.output.line(text.trimEnd())
      return
    }

    const {writeFileAtomic} = await import('../../atomic-file.js')
    await writeFileAtomic(flags.output, text, 0o600)
    this.output.result({output: flags.output, uuid: config.uuid ?? null}, () => this.output.success(`wrote ${flags.output}`))
  }
}
