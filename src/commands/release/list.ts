import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {releaseColumns} from '../../cli/release-view.js'

export default class ReleaseList extends FlotillaCommand {
  static override summary = 'List the releases of a fleet, newest first'
  static override hiddenAliases = ['releases']
  static override examples = ['<%= config.bin %> release list myorg/myfleet', '<%= config.bin %> releases myfleet --json']
  static override args = {fleet: Args.string({required: true, description: 'fleet slug (org/name) or name'})}

  async run(): Promise<void> {
    const {args} = await this.parse(ReleaseList)
    const {listReleases} = await import('../../sdk/releases.js')
    const releases = await listReleases(await this.sdk(), args.fleet)
    this.output.result(releases, () => this.output.table(releases, releaseColumns))
  }
}
