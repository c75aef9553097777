import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {showRelease} from '../../cli/release-view.js'

export default class ReleaseInfo extends FlotillaCommand {
  static override summary = 'Show a release'
  static override hiddenAliases = ['release:info']
  static override examples = ['<%= config.bin %> release 1a2b3c4', '<%= config.bin %> release 42 --composition', '<%= config.bin %> release 1a2b3c4 --json']
  static override args = {release: Args.string({required: true, description: 'release id or commit (7+ characters)'})}
  static override flags = {composition: Flags.boolean({char: 'c', description: "show the release's composition (its docker-compose services)"})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ReleaseInfo)
    const {getRelease} = await import('../../sdk/releases.js')
    const release = await getRelease(await this.sdk(), args.release, {composition: flags.composition})
    this.output.result(release, () => {
      showRelease(this.output, release)
      if (flags.composition) this.output.line(JSON.stringify(release.composition ?? {}, null, 2))
    })
  }
}
