import {Command, Errors, Flags} from '@oclif/core'

import {ApiError, ExpectedError, InterruptedError} from '../errors.js'
import type {FleetClient} from '../sdk/client.js'
import {Output} from './output.js'
import {type ResolvedRemote, SettingsStore} from './settings.js'
import {closestMatch} from './suggestions.js'

function colorWanted(flags: {json?: boolean; 'no-color'?: boolean}): boolean {
  if (flags.json || flags['no-color']) return false
  if ('NO_COLOR' in process.env && process.env.NO_COLOR !== '') return false
  if (process.env.FORCE_COLOR && process.env.FORCE_COLOR !== '0') return true
  return Boolean(process.stdout.isTTY)
}

function isParseError(error: unknown): boolean {
  return error instanceof Errors.CLIError && /ParseError|Required|Unexpected|NonExistent|Invalid|Failed|Violated/i.test(error.constructor.name)
}

type ParseError = Errors.CLIError & {args?: Array<{name?: string}>; flags?: string[]}

/** Every spelling of a command's flags: `--name`, its aliases, and `-c`. */
function flagSpellings(flags: Record<string, {aliases?: string[]; char?: string}>): string[] {
  return Object.entries(flags).flatMap(([name, flag]) => [`--${name}`, ...(flag.aliases ?? []).map((alias) => `--${alias}`), ...(flag.char ? [`-${flag.char}`] : [])])
}

/**
 * oclif's parse errors in one line that names what is missing or wrong (oclif lists the names on the lines after
 * a "Missing 1 required arg:"), with the closest spelling of a mistyped flag.
 */
export function describeParseError(error: ParseError, knownFlags: string[]): string {
  const name = error.constructor.name
  if (name === 'RequiredArgsError' && error.args?.length) {
    const names = error.args.map((arg) => (arg.name ?? '').toUpperCase())
    return `missing argument${names.length === 1 ? '' : 's'} ${names.join(' and ')}`
  }

  if (name === 'NonExistentFlagsError' && error.flags?.length) {
    const [typed] = error.flags
    const flag = typed.split('=')[0]
    const meant = closestMatch(flag, knownFlags.filter((known) => known.startsWith('--') === flag.startsWith('--')))
    return `unknown flag ${error.flags.join(', ')}${meant ? ` (did you mean ${meant}?)` : ''}`
  }

  const lines = error.message.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !/^See more help with/.test(line))
  // "The following error occurred:" and its reasons, on the lines after it.
  const reasons = lines.length > 1 && lines[0].endsWith(':') ? lines.slice(1) : lines.slice(0, 1)
  return reasons.map((reason) => reason.replace(/^Missing required flag (\w[\w-]*)$/, 'missing required flag --$1')).join('; ')
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
  private remote?: ResolvedRemote

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

  /** The remote and credentials commands use, and where each came from. */
  protected async resolvedRemote(): Promise<ResolvedRemote> {
    this.remote ??= await this.settings.resolveRemote()
    return this.remote
  }

  /** The fleet API client for the current remote and credentials. */
  protected async sdk(): Promise<FleetClient> {
    if (!this.client) {
      const {FleetClient} = await import('../sdk/client.js')
      const remote = await this.resolvedRemote()
      this.client = new FleetClient({remote: remote.url, token: remote.token, clientName: `flotilla/${this.config.version}`, endpointOverrides: remote.endpointOverrides})
    }

    return this.client
  }

  /** This command as people type it: `fleet list`, not oclif's `fleet:list`. */
  private get typedId(): string {
    return (this.id ?? '').replaceAll(':', ' ')
  }

  /**
   * For a command that is also a topic (`fleet <FLEET>`, `fleet list`): the subcommand its first argument looks
   * like, since `fleet lst` runs `fleet` on a fleet named "lst": a hint to add to its error.
   */
  private subcommandMeant(): string | undefined {
    const [first] = this.argv
    if (!this.id || !first || first.startsWith('-')) return undefined
    const depth = this.id.split(':').length + 1
    const subcommands = this.config.commandIDs.filter((id) => id.startsWith(`${this.id}:`) && id.split(':').length === depth)
    const meant = closestMatch(first, subcommands.map((id) => id.split(':').at(-1) ?? ''))
    const argument = Object.keys(this.ctor.args ?? {})[0]?.toUpperCase()
    return meant && `"${first}" was read as the ${argument}; did you mean "${this.config.bin} ${this.typedId} ${meant}"?`
  }

  private explain(error: ExpectedError): string {
    if (error instanceof ApiError && error.statusCode === 401 && this.remote?.tokenSource === 'environment') {
      return `the server at ${this.remote.url} rejected FLOTILLA_TOKEN — it may have expired or been revoked; set FLOTILLA_TOKEN to a valid token or API key, or unset it to use your stored login`
    }

    const meant = this.subcommandMeant()
    return meant ? `${error.message} (${meant})` : error.message
  }

  protected override async catch(error: Error & {exitCode?: number}): Promise<void> {
    const output = this.output ?? new Output({json: false, color: colorWanted({})})
    const debug = Boolean(process.env.DEBUG)
    let exitCode = 1
    if (error instanceof ExpectedError) {
      output.error(this.explain(error))
      exitCode = error.exitCode
    } else if (error.name === 'ExitPromptError' || error.name === 'AbortPromptError') {
      output.error(new InterruptedError().message)
      exitCode = 130
    } else if (error instanceof Errors.ExitError) {
      throw error
    } else if (isParseError(error)) {
      const command = this.ctor as typeof FlotillaCommand
      const known = flagSpellings({...command.flags, ...FlotillaCommand.baseFlags})
      output.error(`${describeParseError(error as ParseError, known)} — see "${this.config.bin} ${this.typedId} --help"`)
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
