import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {describeOwner, ownerFlags, resolveOwner} from '../../cli/owner-flags.js'

export default class TagSet extends FlotillaCommand {
  static override summary = 'Set a tag on a fleet or device'
  static override examples = ['<%= config.bin %> tag set location lab --device 7cf02a6', '<%= config.bin %> tag set owner team-a --fleet myfleet']
  static override args = {
    key: Args.string({required: true, description: 'tag key'}),
    value: Args.string({ignoreStdin: true, required: false, default: '', description: 'tag value (default: empty)'}),
  }

  static override flags = {...ownerFlags}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(TagSet)
    const client = await this.sdk()
    const owner = await resolveOwner(client, flags)
    const {setTag} = await import('../../sdk/tags.js')
    await setTag(client, owner, args.key, args.value)
    this.output.result({tag_key: args.key, value: args.value}, () => this.output.success(`tagged ${describeOwner(owner)} ${args.key}=${args.value}`))
  }
}
