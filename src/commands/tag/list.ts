import {FlotillaCommand} from '../../cli/base.js'
import {ownerFlags, resolveOwner} from '../../cli/owner-flags.js'

export default class TagList extends FlotillaCommand {
  static override summary = 'List the tags of a fleet or device'
  static override hiddenAliases = ['tags']
  static override examples = ['<%= config.bin %> tag list --fleet myorg/myfleet', '<%= config.bin %> tag list --device 7cf02a6 --json']
  static override flags = {...ownerFlags}

  async run(): Promise<void> {
    const {flags} = await this.parse(TagList)
    const client = await this.sdk()
    const owner = await resolveOwner(client, flags)
    const {listTags} = await import('../../sdk/tags.js')
    const tags = await listTags(client, owner)
    this.output.result(tags, () =>
      this.output.table(tags, [
        {header: 'KEY', value: (tag) => tag.tag_key},
        {header: 'VALUE', value: (tag) => tag.value},
      ]),
    )
  }
}
