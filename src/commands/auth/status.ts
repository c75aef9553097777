import {FlotillaCommand} from '../../cli/base.js'
import {NotLoggedInError} from '../../errors.js'

const URL_SOURCES = {environment: 'from FLOTILLA_URL', login: 'from "flotilla login"', default: 'the default'} as const
const TOKEN_SOURCES = {environment: 'FLOTILLA_TOKEN', login: 'stored by "flotilla login"'} as const

export default class AuthStatus extends FlotillaCommand {
  static override summary = 'Show which server and user the CLI is using, and where each comes from'
  static override description = 'Checks the credentials with the server. Exits 1 when not logged in or when the server refuses them.'
  static override examples = ['<%= config.bin %> auth status', '<%= config.bin %> auth status --json']

  async run(): Promise<void> {
    await this.parse(AuthStatus)
    const remote = await this.resolvedRemote()
    const {tokenSource} = remote
    if (!tokenSource) {
      throw new NotLoggedInError(`not logged in to ${remote.url} (${URL_SOURCES[remote.urlSource]}) — run "flotilla login", or set FLOTILLA_TOKEN`)
    }

    const client = await this.sdk()
    const {whoami} = await import('../../sdk/auth.js')
    const actor = await whoami(client)
    const status = {url: remote.url, urlSource: remote.urlSource, tokenSource, ...actor}
    this.output.result(status, () =>
      this.output.keyValue([
        ['server', `${remote.url} (${URL_SOURCES[remote.urlSource]})`],
        ['logged in as', `${actor.username ?? actor.slug ?? actor.uuid}${actor.email ? ` <${actor.email}>` : ''} (${actor.actorType})`],
        ['token', TOKEN_SOURCES[tokenSource]],
      ]),
    )
  }
}
