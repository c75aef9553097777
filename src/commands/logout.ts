import {FlotillaCommand} from '../cli/base.js'

export default class Logout extends FlotillaCommand {
  static override summary = 'Forget the stored credentials'
  static override examples = ['<%= config.bin %> logout']

  async run(): Promise<void> {
    await this.parse(Logout)
    const removed = await this.settings.clearCredentials()
    this.output.result({loggedOut: removed}, () => this.output.success(removed ? 'logged out' : 'you were not logged in'))
  }
}
