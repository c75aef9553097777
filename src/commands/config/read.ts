import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class ConfigRead extends FlotillaCommand {
  static override summary = 'Print the config.json of a flashed drive or an OS image'
  static override examples = ['<%= config.bin %> config read --drive /dev/sdb', '<%= config.bin %> config read --drive balena.img --json']
  static override flags = {
    drive: Flags.string({char: 'd', required: true, description: 'block device (/dev/sdb) or image file holding the boot partition'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ConfigRead)
    const {readConfigJson} = await import('../../image/config-json-file.js')
    const config = await readConfigJson(flags.drive)
    this.output.printJson(config)
  }
}
