import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {describeOwner, ownerFlags, resolveOwner} from '../../cli/owner-flags.js'
import {confirmDestructive} from '../../cli/prompts.js'
import {NotFoundError} from '../../errors.js'

export default class EnvRm extends FlotillaCommand {
  static override summary = 'Remove a variable from a fleet or device'
  static override hiddenAliases = ['env:remove']
  static override examples = ['<%= config.bin %> env rm LOG_LEVEL --fleet myorg/myfleet --yes']
  static override args = {name: Args.string({required: true, description: 'variable name'})}
  static override flags = {...ownerFlags, yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation'})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(EnvRm)
    const client = await this.sdk()
    const owner = await resolveOwner(client, flags)
    if (!(await confirmDestructive(`Remove ${args.name} from ${describeOwner(owner)}?`, flags.yes))) return
    const {removeVariable} = await import('../../sdk/variables.js')
    if (!(await removeVariable(client, owner, args.name))) {
      throw new NotFoundError('variable', args.name, `run "flotilla env list" with the same --fleet/--device to see them`)
    }

    this.output.result({removed: args.name}, () => this.output.success(`removed ${args.name} from ${describeOwner(owner)}`))
  }
}
