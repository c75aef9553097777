import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class FleetPin extends FlotillaCommand {
  static override summary = 'Run one release on a fleet and stop following new ones'
  static override description = 'Devices pinned to a release of their own keep it. "fleet track-latest" follows new releases again.'
  static override examples = ['<%= config.bin %> fleet pin myorg/sensors 3a1b2c4']
  static override args = {
    fleet: Args.string({required: true, description: 'fleet slug (org/name) or name'}),
    release: Args.string({required: true, description: 'release id or commit (7+ characters)'}),
  }

  async run(): Promise<void> {
    const {args} = await this.parse(FleetPin)
    const client = await this.sdk()
    const {getFleet, pinFleet} = await import('../../sdk/fleets.js')
    const {getRelease} = await import('../../sdk/releases.js')
    const [fleet, release] = await Promise.all([getFleet(client, args.fleet), getRelease(client, args.release)])
    const pinned = await pinFleet(client, fleet, release)
    this.output.result(pinned, () => this.output.success(`fleet ${fleet.slug} runs release ${release.commit.slice(0, 7)}`))
  }
}
