import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class FleetRename extends FlotillaCommand {
  static override summary = 'Rename a fleet'
  static override examples = ['<%= config.bin %> fleet rename myorg/oldname newname']
  static override args = {
    fleet: Args.string({required: true, description: 'fleet slug (org/name) or name'}),
    newName: Args.string({required: true, description: 'the new name'}),
  }

  async run(): Promise<void> {
    const {args} = await this.parse(FleetRename)
    const {renameFleet} = await import('../../sdk/fleets.js')
    const fleet = await renameFleet(await this.sdk(), args.fleet, args.newName)
    this.output.result(fleet, () => this.output.success(`renamed to ${fleet.slug}`))
  }
}
