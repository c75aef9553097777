import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {describeOwner, type Owner, ownerFlags, resolveOwner} from '../../cli/owner-flags.js'
import {confirmDestructive} from '../../cli/prompts.js'
import {NotFoundError, UsageError} from '../../errors.js'

export default class EnvRm extends FlotillaCommand {
  static override summary = 'Remove a variable from a fleet, device or service'
  static override description = [
    'Give the variable by name with --fleet or --device (and --service for a service variable), or by the ID "env list" shows.',
    'An ID names a row of one of six resources, chosen as balena-cli chooses them: fleet (default) or device (--device <uuid>),',
    'environment (default), config (--config) or service (--service <name>). Unlike balena-cli, --device and --service take a value,',
    'and the variable must belong to them.',
  ].join('\n')

  static override hiddenAliases = ['env:remove']
  static override examples = [
    '<%= config.bin %> env rm LOG_LEVEL --fleet myorg/myfleet --yes',
    '<%= config.bin %> env rm EDITOR --device 7cf02a6 --service main --yes',
    '<%= config.bin %> env rm 123123 --yes',
    '<%= config.bin %> env rm 345345 --config --yes',
    '<%= config.bin %> env rm 456456 --fleet myorg/myfleet --service main --yes',
    '<%= config.bin %> env rm 567567 --device 7cf02a6 --service main --yes',
  ]

  static override args = {variable: Args.string({required: true, description: 'variable name, or its ID as "env list" shows it'})}
  static override flags = {
    ...ownerFlags,
    service: Flags.string({char: 's', description: 'the service the variable belongs to', exclusive: ['config']}),
    config: Flags.boolean({char: 'c', description: 'with an ID: the variable is a config variable', exclusive: ['service']}),
    yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(EnvRm)
    const byId = /^\d+$/.test(args.variable)
    if (!byId && !flags.fleet && !flags.device) throw new UsageError('say whose: add --fleet <fleet> or --device <uuid>, or give the variable\'s ID from "flotilla env list"')
    const client = await this.sdk()
    const owner: Owner | undefined = flags.fleet || flags.device ? await resolveOwner(client, flags) : undefined
    const where = [flags.service ? `service ${flags.service}` : '', owner ? describeOwner(owner) : ''].filter(Boolean).join(' of ')
    const what = byId ? `variable ${args.variable}` : args.variable
    if (!(await confirmDestructive(`Remove ${what}${where ? ` from ${where}` : ''}?`, flags.yes))) return
    const {removeVariable, removeVariableById} = await import('../../sdk/variables.js')
    const removed = byId
      ? await removeVariableById(client, Number(args.variable), {owner, service: flags.service, config: flags.config})
      : await removeVariable(client, owner!, args.variable, {service: flags.service})
    if (!removed) throw new NotFoundError('variable', args.variable, 'run "flotilla env list" with the same --fleet/--device/--service to see them')
    this.output.removed([byId ? Number(args.variable) : args.variable], `removed ${what}${where ? ` from ${where}` : ''}`)
  }
}
