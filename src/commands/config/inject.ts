import {readFile} from 'node:fs/promises'

import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {ExpectedError} from '../../errors.js'

export default class ConfigInject extends FlotillaCommand {
  static override summary = 'Replace the config.json of a flashed drive or an OS image with a file'
  static override examples = ['<%= config.bin %> config inject config.json --drive /dev/sdb', '<%= config.bin %> config inject my-config.json --drive balena.img']
  static override args = {file: Args.string({required: true, description: 'the config.json to put on the boot partition'})}
  static override flags = {
    drive: Flags.string({char: 'd', required: true, description: 'block device (/dev/sdb) or image file holding the boot partition'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ConfigInject)
    const {writeConfigJson} = await import('../../image/config-json-file.js')
    const {parseConfigJson} = await import('../../protocol/config-json.js')
    const text = await readFile(args.file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      throw new ExpectedError(`cannot read ${args.file}: ${error.code === 'ENOENT' ? 'no such file' : error.message}`)
    })
    const config = parseConfigJson(text, args.file)
    const partition = await writeConfigJson(flags.drive, config)
    this.output.result({drive: flags.drive, partition: partition.index}, () => this.output.success(`wrote ${args.file} to partition ${partition.index} of ${flags.drive}`))
  }
}
