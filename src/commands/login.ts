import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../cli/base.js'
import {canPrompt, promptChoice, promptText, readStdin} from '../cli/prompts.js'
import {checkRemote, DEFAULT_URL} from '../cli/settings.js'
import {UsageError} from '../errors.js'

export default class Login extends FlotillaCommand {
  static override summary = 'Log in to a fleet server'
  static override description = `Stores a session token or API key for the server at --url (a flotilla server URL such as ${DEFAULT_URL}, or a balena-style domain such as balena-cloud.com). FLOTILLA_URL and FLOTILLA_TOKEN override what is stored. Secrets can be read from stdin so they stay out of shell history and the process list.`

  static override examples = [
    '<%= config.bin %> login --url http://127.0.0.1:7171 --credentials --email admin@example.com',
    'echo "$FLOTILLA_API_KEY" | <%= config.bin %> login --token -',
    'printf "%s" "$PASSWORD" | <%= config.bin %> login --credentials --email admin@example.com --password -',
    '<%= config.bin %> login',
  ]

  static override flags = {
    url: Flags.string({description: 'fleet server URL or balena-style domain (default: the stored one, else ' + DEFAULT_URL + ')'}),
    token: Flags.string({char: 't', description: 'session token or API key; "-" reads it from stdin'}),
    credentials: Flags.boolean({char: 'c', description: 'log in with email (or username) and password'}),
    email: Flags.string({char: 'e', aliases: ['username'], description: 'email or username, with --credentials'}),
    password: Flags.string({char: 'p', description: 'password, with --credentials; "-" reads it from stdin'}),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Login)
    const stored = await this.settings.resolveRemote()
    const url = flags.url === undefined ? stored.url : checkRemote(flags.url, '--url')
    const method = await this.chooseMethod(flags)
    const {establishSession} = await import('../sdk/session.js')
    const {token, actor} = await establishSession(url, method, `flotilla/${this.config.version}`)
    await this.settings.saveCredentials({url, token})
    const who = actor.username ?? actor.slug ?? actor.uuid ?? String(actor.id)
    this.output.result({url, actorType: actor.actorType, username: actor.username ?? null}, () =>
      this.output.success(`logged in to ${url} as ${who}`),
    )
  }

  private async chooseMethod(flags: {token?: string; credentials: boolean; email?: string; password?: string}) {
    for (const flag of ['token', 'password'] as const) {
      if (flags[flag] !== undefined && flags[flag] !== '-') {
        this.output.warn(`--${flag} on the command line can be read by other users of this machine (ps, /proc) and stays in shell history — use --${flag} - and pipe it in`)
      }
    }

    if (flags.token !== undefined) {
      if (flags.credentials) throw new UsageError('give either --token or --credentials, not both')
      return {token: flags.token === '-' ? await readStdin() : flags.token}
    }

    let credentials = flags.credentials || flags.email !== undefined
    if (!credentials) {
      if (!canPrompt()) throw new UsageError('say how to log in: --token <token|-> or --credentials --email <email> --password -')
      const choice = await promptChoice(
        'How do you want to log in?',
        [
          {name: 'Email and password', value: 'credentials'},
          {name: 'Session token or API key', value: 'token'},
        ],
        'token',
      )
      if (choice === 'token') return {token: await promptText('Token:', {secret: true, flagName: 'token'})}
      credentials = true
    }

    const username = flags.email ?? (await promptText('Email or username:', {flagName: 'email'}))
    const password =
      flags.password === '-'
        ? await readStdin()
        : (flags.password ?? (await promptText('Password:', {secret: true, flagName: 'password'})))
    return {username, password}
  }
}
