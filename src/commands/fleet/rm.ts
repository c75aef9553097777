import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {confirmDestructive} from '../../cli/prompts.js'

export default class FleetRm extends FlotillaCommand {
  static override summary = 'Remove a fleet with its devices, releases and variables'
  static override hiddenAliases = ['fleet:remove']
  static override examples = ['<%= config.bin %> fleet rm myorg/myfleet --yes']
  static override args = {fleet: Args.string({required: true, description: 'fleet slug (org/name) or name'})}
  static override flags = {yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation'})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(FleetRm)
    const client = await this.sdk()
    const {getFleet, removeFleet} = await import('../../sdk/fleets.js')
    const fleet = await getFleet(client, args.fleet)
    const devices = fleet.device_count === 1 ? '1 device' : `${fleet.device_count} devices`
    if (!(await confirmDestructive(`Remove fleet ${fleet.slug} and its ${devices}?`, flags.yes))) return
    await removeFleet(client, fleet)
    this.output.removed([fleet.slug], `removed fleet ${fleet.slug}`)
  }
}
