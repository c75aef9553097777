import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class ReleaseFinalize extends FlotillaCommand {
  static override summary = 'Finalize a release, so that fleets tracking the latest release get it unless they have a newer one'
  static override examples = ['<%= config.bin %> release finalize 1a2b3c4']
  static override args = {release: Args.string({required: true, description: 'release id or commit (7+ characters)'})}

  async run(): Promise<void> {
    const {args} = await this.parse(ReleaseFinalize)
    const client = await this.sdk()
    const {finalizeRelease, getRelease} = await import('../../sdk/releases.js')
    const release = await getRelease(client, args.release)
    if (release.is_final && release.status === 'success') {
      this.output.result({id: release.id, is_final: true}, () => this.output.info(`release ${release.commit.slice(0, 7)} is already final`))
      return
    }

    await finalizeRelease(client, release)
    this.output.result({id: release.id, is_final: true}, () => this.output.success(`finalized release ${release.commit.slice(0, 7)}`))
  }
}
