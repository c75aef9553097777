import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../cli/base.js'
import {printLogLine} from '../cli/log-view.js'

export default class Logs extends FlotillaCommand {
  static override summary = 'Show device logs'
  static override description =
    'Prints the logs the device sent (the server keeps its last 1000 lines), then with --tail follows new lines until interrupted. --json prints one JSON object a line.'

  static override hiddenAliases = ['device:logs']
  static override examples = [
    '<%= config.bin %> logs 7cf02a6',
    '<%= config.bin %> logs 7cf02a6 --tail --max-retry 10',
    '<%= config.bin %> logs 7cf02a6 --service main --service worker --system',
    '<%= config.bin %> logs 7cf02a6 --json',
  ]

  static override args = {device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'})}
  static override flags = {
    tail: Flags.boolean({char: 't', description: 'keep following new lines'}),
    service: Flags.string({char: 's', multiple: true, description: 'only this service (repeat for several)'}),
    system: Flags.boolean({char: 'S', description: 'only system lines (with --service: those too)'}),
    'max-retry': Flags.integer({description: 'with --tail, reconnections after a dropped stream', default: 5, min: 0}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Logs)
    const client = await this.sdk()
    const {streamLogs} = await import('../sdk/logs.js')
    const lines = streamLogs(client, args.device, {tail: flags.tail, services: flags.service, system: flags.system, maxRetry: flags['max-retry']})
    for await (const line of lines) printLogLine(this.output, line)
  }
}
