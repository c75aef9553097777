import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class FleetTrackLatest extends FlotillaCommand {
  static override summary = 'Make a fleet follow its newest release again'
  static override examples = ['<%= config.bin %> fleet track-latest myorg/sensors']
  static override args = {fleet: Args.string({required: true, description: 'fleet slug (org/name) or name'})}

  async run(): Promise<void> {
    const {args} = await this.parse(FleetTrackLatest)
    const client = await this.sdk()
    const {getFleet, trackLatestRelease} = await import('../../sdk/fleets.js')
    const fleet = await trackLatestRelease(client, await getFleet(client, args.fleet))
    this.output.result(fleet, () => this.output.success(`fleet ${fleet.slug} follows its latest release`))
  }
}
