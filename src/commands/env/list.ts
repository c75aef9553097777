import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {ownerFlags, resolveOwner} from '../../cli/owner-flags.js'

export default class EnvList extends FlotillaCommand {
  static override summary = 'List the environment or config variables of a fleet or device'
  static override description = "A device's list includes the fleet variables it inherits (marked * in the FLEET column)."
  static override hiddenAliases = ['envs']
  static override examples = [
    '<%= config.bin %> env list --fleet myorg/myfleet',
    '<%= config.bin %> env list --device 7cf02a6 --json',
    '<%= config.bin %> env list --fleet myfleet --config',
  ]

  static override flags = {
    ...ownerFlags,
    config: Flags.boolean({char: 'c', description: 'list config variables (BALENA_*/RESIN_*) instead of environment variables'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(EnvList)
    const client = await this.sdk()
    const owner = await resolveOwner(client, flags)
    const {listVariables} = await import('../../sdk/variables.js')
    const variables = await listVariables(client, owner, {config: flags.config})
    const ofDevice = 'device' in owner
    this.output.result(variables, () =>
      this.output.table(variables, [
        {header: 'ID', value: (variable) => variable.id},
        {header: 'NAME', value: (variable) => variable.name},
        {header: 'VALUE', value: (variable) => variable.value},
        {header: 'FLEET', value: (variable) => (variable.fleet ? (ofDevice ? `* ${variable.fleet}` : variable.fleet) : '')},
        ...(ofDevice ? [{header: 'DEVICE', value: (variable: {device: string | null}) => variable.device?.slice(0, 7) ?? ''}] : []),
      ]),
    )
  }
}
