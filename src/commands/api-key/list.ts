import {FlotillaCommand} from '../../cli/base.js'
import {apiKeyColumns} from '../../cli/views.js'

export default class ApiKeyList extends FlotillaCommand {
  static override summary = 'List your API keys (never the keys themselves)'
  static override hiddenAliases = ['api-keys']
  static override examples = ['<%= config.bin %> api-key list', '<%= config.bin %> api-key list --json']

  async run(): Promise<void> {
    await this.parse(ApiKeyList)
    const {listApiKeys} = await import('../../sdk/api-keys.js')
    const keys = await listApiKeys(await this.sdk())
    this.output.result(keys, () => this.output.table(keys, apiKeyColumns))
  }
}
