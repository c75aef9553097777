import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class ReleaseInvalidate extends FlotillaCommand {
  static override summary = 'Invalidate a release, so that it is never deployed again (or validate it back)'
  static override examples = ['<%= config.bin %> release invalidate 1a2b3c4', '<%= config.bin %> release invalidate 1a2b3c4 --undo']
  static override args = {release: Args.string({required: true, description: 'release id or commit (7+ characters)'})}
  static override flags = {undo: Flags.boolean({description: 'mark the release valid again'})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(ReleaseInvalidate)
    const client = await this.sdk()
    const {getRelease, setReleaseInvalidated} = await import('../../sdk/releases.js')
    const release = await getRelease(client, args.release)
    await setReleaseInvalidated(client, release, !flags.undo)
    const state = flags.undo ? 'validated' : 'invalidated'
    this.output.result({id: release.id, is_invalidated: !flags.undo}, () => this.output.success(`${state} release ${release.commit.slice(0, 7)}`))
  }
}
