import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {UsageError} from '../../errors.js'

export default class ApiKeyGenerate extends FlotillaCommand {
  static override summary = 'Generate an API key for scripts and CI'
  static override description = 'The key is printed once, on stdout; the server keeps only a hash. Use it with FLOTILLA_TOKEN or "flotilla login --token -".'
  static override examples = ['<%= config.bin %> api-key generate ci', '<%= config.bin %> api-key generate deploy --expiry-date 2027-01-31']
  static override args = {name: Args.string({required: true, description: 'a name to recognise the key by'})}
  static override flags = {
    description: Flags.string({description: 'what the key is for'}),
    'expiry-date': Flags.string({description: 'ISO date after which the key stops working (default: never)'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ApiKeyGenerate)
    let expiryDate: Date | null = null
    if (flags['expiry-date']) {
      expiryDate = new Date(flags['expiry-date'])
      if (Number.isNaN(expiryDate.getTime())) throw new UsageError(`invalid --expiry-date "${flags['expiry-date']}" — use an ISO date such as 2027-01-31`)
    }

    const {generateApiKey} = await import('../../sdk/api-keys.js')
    const key = await generateApiKey(await this.sdk(), {name: args.name, description: flags.description, expiryDate})
    this.output.result({name: args.name, key}, () => {
      this.output.info(`API key "${args.name}" generated; it is shown only this once:`)
      this.output.line(key)
    })
  }
}
