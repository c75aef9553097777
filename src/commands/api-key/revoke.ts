import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {NotFoundError, UsageError} from '../../errors.js'

export default class ApiKeyRevoke extends FlotillaCommand {
  static override summary = 'Revoke API keys by id: yours, or provisioning and device keys of your fleets'
  static override strict = false
  static override description = 'Ids are those "flotilla api-key list" shows, with --fleet or --device for a fleet\'s or device\'s keys. A revoked device key stops working at once, and the device link opened with it is closed. When any id is unknown, nothing is revoked.'
  static override examples = ['<%= config.bin %> api-key revoke 12', '<%= config.bin %> api-key revoke 12 13']
  static override args = {id: Args.string({required: true, description: 'key ids, as "flotilla api-key list" shows them'})}

  async run(): Promise<void> {
    const {argv} = await this.parse(ApiKeyRevoke)
    const ids = (argv as string[]).map((text) => {
      if (!/^\d+$/.test(text)) throw new UsageError(`"${text}" is not an API key id — run "flotilla api-key list" to see them`)
      return Number(text)
    })
    const {revokeApiKeys} = await import('../../sdk/api-keys.js')
    const unknown = await revokeApiKeys(await this.sdk(), ids)
    if (unknown.length > 0) throw new NotFoundError('API key', unknown.join(', '), 'nothing was revoked — run "flotilla api-key list" (with --fleet or --device for their keys) to see the ids')
    this.output.result({revoked: ids}, () => this.output.success(`revoked ${ids.join(', ')}`))
  }
}
