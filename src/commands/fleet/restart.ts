import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class FleetRestart extends FlotillaCommand {
  static override summary = "Restart the services on every online device of a fleet"
  static override examples = ['<%= config.bin %> fleet restart myorg/sensors']
  static override args = {fleet: Args.string({required: true, description: 'fleet slug (org/name) or name'})}

  async run(): Promise<void> {
    const {args} = await this.parse(FleetRestart)
    const client = await this.sdk()
    const {getFleet, restartFleet} = await import('../../sdk/fleets.js')
    const fleet = await getFleet(client, args.fleet)
    await restartFleet(client, fleet)
    this.output.result({slug: fleet.slug, action: 'restart'}, () => this.output.success(`asked the online devices of ${fleet.slug} to restart their services`))
  }
}
