import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {ownerFlags, resolveOwner} from '../../cli/owner-flags.js'

export default class EnvList extends FlotillaCommand {
  static override summary = 'List the environment or config variables of a fleet, device or service'
  static override description = [
    "A fleet's list includes its service variables; a device's list also includes the fleet variables it inherits, leaving out those",
    'a device variable of the same name overrides. As in balena-cli, * in the DEVICE or SERVICE column means all devices or all services.',
  ].join('\n')

  static override hiddenAliases = ['envs']
  static override examples = [
    '<%= config.bin %> env list --fleet myorg/myfleet',
    '<%= config.bin %> env list --fleet myorg/myfleet --service main',
    '<%= config.bin %> env list --device 7cf02a6 --json',
    '<%= config.bin %> env list --fleet myfleet --config',
  ]

  static override flags = {
    ...ownerFlags,
    config: Flags.boolean({char: 'c', description: 'list config variables (BALENA_*/RESIN_*) instead of environment variables', exclusive: ['service']}),
    service: Flags.string({char: 's', description: 'only the variables that reach this service', exclusive: ['config']}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(EnvList)
    const client = await this.sdk()
    const owner = await resolveOwner(client, flags)
    const {listVariables} = await import('../../sdk/variables.js')
    const variables = await listVariables(client, owner, {config: flags.config, service: flags.service})
    const ofDevice = 'device' in owner
    this.output.result(variables, () =>
      this.output.table(variables, [
        {header: 'ID', value: (variable) => variable.id},
        {header: 'NAME', value: (variable) => variable.name},
        {header: 'VALUE', value: (variable) => variable.value},
        {header: 'FLEET', value: (variable) => variable.fleet ?? ''},
        ...(ofDevice ? [{header: 'DEVICE', value: (variable: {device: string | null}) => variable.device?.slice(0, 7) ?? '*'}] : []),
        ...(flags.config ? [] : [{header: 'SERVICE', value: (variable: {service: string | null}) => variable.service ?? '*'}]),
      ]),
    )
  }
}
