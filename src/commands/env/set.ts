import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {describeOwner, ownerFlags, resolveOwner} from '../../cli/owner-flags.js'

export default class EnvSet extends FlotillaCommand {
  static override summary = 'Set an environment or config variable of a fleet, device or service'
  static override description = [
    'Names starting with BALENA_ or RESIN_ are stored as config variables. Setting an existing name replaces its value.',
    'With --service the variable applies to that service only: of every device of the fleet (--fleet), or of one device (--device).',
    "On a device, each service's environment is merged lowest first: fleet, fleet service, device, then device service variables.",
  ].join('\n')

  static override hiddenAliases = ['env:add']
  static override examples = [
    '<%= config.bin %> env set LOG_LEVEL debug --fleet myorg/myfleet',
    '<%= config.bin %> env set API_URL https://example.com --device 7cf02a6',
    '<%= config.bin %> env set EDITOR vim --fleet myorg/myfleet --service main',
    '<%= config.bin %> env set EDITOR vim --device 7cf02a6 --service main',
  ]

  static override args = {
    name: Args.string({required: true, description: 'variable name'}),
    value: Args.string({required: true, description: 'variable value'}),
  }

  static override flags = {
    ...ownerFlags,
    service: Flags.string({char: 's', description: "service name: the variable applies to this service of the fleet's release only"}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(EnvSet)
    const client = await this.sdk()
    const {setVariable, validateVariableName} = await import('../../sdk/variables.js')
    validateVariableName(args.name)
    const owner = await resolveOwner(client, flags)
    await setVariable(client, owner, args.name, args.value, {service: flags.service})
    const where = flags.service ? `service ${flags.service} of ${describeOwner(owner)}` : describeOwner(owner)
    this.output.result({name: args.name, value: args.value, service: flags.service ?? null}, () => this.output.success(`set ${args.name} on ${where}`))
  }
}
