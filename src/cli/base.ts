import {Command, Errors, Flags} from '@oclif/core'

import {ExpectedError, InterruptedError} from '../errors.js'
import type {FleetClient} from '../sdk/client.js'
import {Output} from './output.js'
import {SettingsStore} from './settings.js'

function colorWanted(flags: {json?: boolean; 'no-color'?: boolean}): boolean {
  if (flags.json || flags['no-color']) return false
  if ('NO_COLOR' in process.env && process.env.NO_COLOR !== '') return false
  if (process.env.FORCE_COLOR && process.env.FORCE_COLOR !== '0') return true
  return Boolean(process.stdout.isTTY)
}

function isParseError(error: unknown): boolean {
  return error instanceof Errors.CLIError && /ParseError|Required|Unexpected|NonExistent|Invalid|Failed/i.test(error.constructor.name)
}

/** The shared behaviour of every command: `--json`, colour, one client, one-line errors and exit codes. */
export abstract class FlotillaCommand extends Command {
  static override baseFlags = {
    json: Flags.boolean({description: 'print the result as JSON', helpGroup: 'GLOBAL'}),
    'no-color': Flags.boolean({description: 'disable colours (also: NO_COLOR)', helpGroup: 'GLOBAL'}),
  }

  protected output!: Output
  protected settings!: SettingsStore
  private client?: FleetClient

  override async init(): Promise<void> {
    await super.init()
    // A reader that went away (`flotilla logs --tail | head`) ends the command quietly, as it does for other tools.
    process.stdout.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(0)
      throw error
    })
    const {flags} = await this.parse({
      flags: (this.ctor as typeof FlotillaCommand).flags,
      baseFlags: FlotillaCommand.baseFlags,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.output = new Output({json: flags.json, color: colorWanted(flags)})
    this.settings = new SettingsStore(this.config.configDir)
  }

  /** The fleet API client for the current remote and credentials. */
  protected async sdk(): Promise<FleetClient> {
    if (!this.client) {
      const {FleetClient} = await import('../sdk/client.js')
      const remote = await this.settings.resolveRemote()
      this.client = new FleetClient({remote: remote.url, token: remote.token, clientName: `flotilla/${this.config.version}`, endpointOverrides: remote.endpointOverrides})
    }

    return this.client
  }

  protected override async catch(error: Error & {exitCode?: number}): Promise<void> {
    const output = this.output ?? new Output({json: false, color: colorWanted({})})
    const debug = Boolean(process.env.DEBUG)
    let exitCode = 1
    if (error instanceof ExpectedError) {
      output.error(error.message)
      exitCode = error.exitCode
    } else if (error.name === 'ExitPromptError' || error.name === 'AbortPromptError') {
      output.error(new InterruptedError().message)
      exitCode = 130
    } else if (error instanceof Errors.ExitError) {
      throw error
    } else if (isParseError(error)) {
      output.error(`${error.message.split('\n')[0]} — see "${this.config.bin} ${this.id} --help"`)
      exitCode = 2
    } else if (error instanceof Errors.CLIError) {
      output.error(error.message.split('\n')[0])
      exitCode = error.oclif?.exit ?? 1
    } else {
      output.error(`unexpected failure: ${error.message}${debug ? '' : ' (run with DEBUG=1 for details, and please report it)'}`)
    }

    if (debug && error.stack) output.info(error.stack)
    this.exit(exitCode)
  }
}
