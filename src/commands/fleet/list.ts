import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {fleetColumns} from '../../cli/views.js'

export default class FleetList extends FlotillaCommand {
  static override summary = 'List your fleets'
  static override hiddenAliases = ['fleets']
  static override examples = ['<%= config.bin %> fleet list', '<%= config.bin %> fleets --organization acme --json']
  static override flags = {organization: Flags.string({char: 'o', description: 'only the fleets of this organization (handle)'})}

  async run(): Promise<void> {
    const {flags} = await this.parse(FleetList)
    const {listFleets} = await import('../../sdk/fleets.js')
    const fleets = await listFleets(await this.sdk(), {organization: flags.organization})
    this.output.result(fleets, () => this.output.table(fleets, fleetColumns))
  }
}
