import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {apiKeyColumns} from '../../cli/views.js'

export default class ApiKeyList extends FlotillaCommand {
  static override summary = 'List API keys: yours, a fleet\'s provisioning keys or a device\'s keys (never the keys themselves)'
  static override hiddenAliases = ['api-keys']
  static override examples = [
    '<%= config.bin %> api-key list',
    '<%= config.bin %> api-key list --fleet myorg/myfleet',
    '<%= config.bin %> api-key list --device 7cf02a6 --json',
  ]

  static override flags = {
    fleet: Flags.string({char: 'f', description: 'list the provisioning keys of this fleet (name or slug)', exclusive: ['device']}),
    device: Flags.string({char: 'd', description: 'list the keys of this device (UUID or a unique prefix of 7+ characters)', exclusive: ['fleet']}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ApiKeyList)
    const {listApiKeys} = await import('../../sdk/api-keys.js')
    const keys = await listApiKeys(await this.sdk(), {fleet: flags.fleet, device: flags.device})
    this.output.result(keys, () => this.output.table(keys, apiKeyColumns))
  }
}
