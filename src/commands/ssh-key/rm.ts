import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {confirmDestructive} from '../../cli/prompts.js'
import {NotFoundError, UsageError} from '../../errors.js'

export default class SshKeyRm extends FlotillaCommand {
  static override summary = 'Remove an SSH public key'
  static override hiddenAliases = ['ssh-key:remove']
  static override examples = ['<%= config.bin %> ssh-key rm 3 --yes']
  static override args = {id: Args.string({required: true, description: 'key id, as "flotilla ssh-key list" shows it'})}
  static override flags = {yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation'})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(SshKeyRm)
    if (!/^\d+$/.test(args.id)) throw new UsageError(`"${args.id}" is not an SSH key id — run "flotilla ssh-key list" to see them`)
    if (!(await confirmDestructive(`Remove SSH key ${args.id}?`, flags.yes))) return
    const {removeSshKey} = await import('../../sdk/ssh-keys.js')
    if (!(await removeSshKey(await this.sdk(), Number(args.id)))) throw new NotFoundError('SSH key', args.id, 'run "flotilla ssh-key list" to see yours')
    this.output.removed([Number(args.id)], `removed SSH key ${args.id}`)
  }
}
