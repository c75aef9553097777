import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {describeOwner, ownerFlags, resolveOwner} from '../../cli/owner-flags.js'
import {NotFoundError} from '../../errors.js'

export default class TagRm extends FlotillaCommand {
  static override summary = 'Remove a tag from a fleet or device'
  static override hiddenAliases = ['tag:remove']
  static override examples = ['<%= config.bin %> tag rm location --device 7cf02a6']
  static override args = {key: Args.string({required: true, description: 'tag key'})}
  static override flags = {...ownerFlags}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(TagRm)
    const client = await this.sdk()
    const owner = await resolveOwner(client, flags)
    const {removeTag} = await import('../../sdk/tags.js')
    if (!(await removeTag(client, owner, args.key))) throw new NotFoundError('tag', args.key, `run "flotilla tag list" to see the tags`)
    this.output.removed([args.key], `removed tag ${args.key} from ${describeOwner(owner)}`)
  }
}
