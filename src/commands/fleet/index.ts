import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {showFleet} from '../../cli/views.js'

export default class FleetInfo extends FlotillaCommand {
  static override summary = 'Show a fleet'
  static override hiddenAliases = ['fleet:info']
  static override examples = ['<%= config.bin %> fleet myorg/myfleet', '<%= config.bin %> fleet myfleet --json']
  static override args = {fleet: Args.string({required: true, description: 'fleet slug (org/name) or name'})}

  async run(): Promise<void> {
    const {args} = await this.parse(FleetInfo)
    const {getFleet} = await import('../../sdk/fleets.js')
    const fleet = await getFleet(await this.sdk(), args.fleet)
    this.output.result(fleet, () => showFleet(this.output, fleet))
  }
}
