import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {deviceConfigFlags, deviceConfigOptionsFrom} from '../../cli/device-config-flags.js'

export default class ConfigGenerate extends FlotillaCommand {
  static override summary = 'Generate a config.json for a device of a fleet'
  static override description =
    "Without --device, the config carries a provisioning key (named and dated with --provisioning-key-name and --provisioning-key-expiry-date): the agent registers itself on first start. With --device, it carries that registered device's own identity and a new device key. The server shapes the config by the image's balenaOS version (--version, default the newest it publishes for the device type). The file is written atomically with mode 0600: it holds a secret."

  static override examples = [
    '<%= config.bin %> config generate --fleet myorg/sensors -o config.json',
    '<%= config.bin %> config generate --device 7cf02a6 --version 6.5.39+rev1 --dev -o config.json',
    '<%= config.bin %> config generate --fleet sensors --network wifi --wifiSsid home --wifiKey s3cretpass --appUpdatePollInterval 1 --json',
    '<%= config.bin %> config generate --fleet sensors --provisioning-key-name line-3 --provisioning-key-expiry-date 2030-12-31 --initial-device-name press-1',
  ]

  static override flags = {
    ...deviceConfigFlags,
    output: Flags.string({char: 'o', description: 'file to write (default: print it on stdout)'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ConfigGenerate)
    const {generateDeviceConfig} = await import('../../sdk/config.js')
    const config = await generateDeviceConfig(await this.sdk(), deviceConfigOptionsFrom(flags))
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
