import {FlotillaCommand} from '../cli/base.js'
import {ExpectedError} from '../errors.js'

export default class Logout extends FlotillaCommand {
  static override summary = 'End the session on the server and forget the stored credentials'
  static override description =
    'On a flotilla server, logging out ends every session token of your user at once (other logins of yours included); API keys keep working until revoked with "flotilla api-key revoke". balena\'s API cannot end a session: there the token is only forgotten here.'

  static override examples = ['<%= config.bin %> logout']

  async run(): Promise<void> {
    await this.parse(Logout)
    const stored = await this.settings.credentials()
    if (stored) await this.endSession(stored)
    const removed = await this.settings.clearCredentials()
    this.output.result({loggedOut: removed}, () => this.output.success(removed ? 'logged out' : 'you were not logged in'))
  }

  /** Ends the stored session on its server; the credentials are forgotten here whatever the server says. */
  private async endSession(stored: {url: string; token: string}): Promise<void> {
    const [{FleetClient}, {endSession}] = await Promise.all([import('../sdk/client.js'), import('../sdk/auth.js')])
    const client = new FleetClient({remote: stored.url, token: stored.token, clientName: `flotilla/${this.config.version}`, retries: 0})
    try {
      const ended = await endSession(client, stored.url, stored.token)
      if (ended === 'unsupported') this.output.warn(`${stored.url} cannot end sessions: the token stays valid until it expires`)
    } catch (error) {
      if (!(error instanceof ExpectedError)) throw error
      this.output.warn(`the session could not be ended on ${stored.url} (${error.message}); it stays valid until it expires`)
    }
  }
}
