import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {showFleet} from '../../cli/views.js'

export default class FleetCreate extends FlotillaCommand {
  static override summary = 'Create a fleet'
  static override examples = [
    '<%= config.bin %> fleet create myfleet --type raspberrypi4-64',
    '<%= config.bin %> fleet create sensors --type intel-nuc --organization acme',
  ]

  static override args = {name: Args.string({required: true, description: 'fleet name (letters, digits, "-" and "_")'})}
  static override flags = {
    type: Flags.string({char: 't', aliases: ['device-type'], required: true, description: 'default device type slug (see "flotilla device-type list")'}),
    organization: Flags.string({char: 'o', description: 'organization handle (default: your personal organization)'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(FleetCreate)
    const {createFleet} = await import('../../sdk/fleets.js')
    const fleet = await createFleet(await this.sdk(), {name: args.name, deviceType: flags.type, organization: flags.organization})
    this.output.result(fleet, () => {
      this.output.success(`created fleet ${fleet.slug}`)
      showFleet(this.output, fleet)
    })
  }
}
