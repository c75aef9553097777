import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {describeOwner, ownerFlags, resolveOwner} from '../../cli/owner-flags.js'

export default class EnvSet extends FlotillaCommand {
  static override summary = 'Set an environment or config variable of a fleet or device'
  static override description = 'Names starting with BALENA_ or RESIN_ are stored as config variables. Setting an existing name replaces its value.'
  static override hiddenAliases = ['env:add']
  static override examples = [
    '<%= config.bin %> env set LOG_LEVEL debug --fleet myorg/myfleet',
    '<%= config.bin %> env set API_URL https://example.com --device 7cf02a6',
  ]

  static override args = {
    name: Args.string({required: true, description: 'variable name'}),
    value: Args.string({required: true, description: 'variable value'}),
  }

  static override flags = {...ownerFlags}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(EnvSet)
    const client = await this.sdk()
    const {setVariable, validateVariableName} = await import('../../sdk/variables.js')
    validateVariableName(args.name)
    const owner = await resolveOwner(client, flags)
    await setVariable(client, owner, args.name, args.value)
    this.output.result({name: args.name, value: args.value}, () => this.output.success(`set ${args.name} on ${describeOwner(owner)}`))
  }
}
