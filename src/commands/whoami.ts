import {FlotillaCommand} from '../cli/base.js'

export default class Whoami extends FlotillaCommand {
  static override summary = 'Show who you are logged in as, and where'
  static override examples = ['<%= config.bin %> whoami', '<%= config.bin %> whoami --json']

  async run(): Promise<void> {
    await this.parse(Whoami)
    const client = await this.sdk()
    const {whoami} = await import('../sdk/auth.js')
    const actor = await whoami(client)
    const info = {url: client.remote, ...actor}
    this.output.result(info, () =>
      this.output.keyValue([
        ['username', actor.username ?? actor.slug ?? actor.uuid],
        ['email', actor.email],
        ['kind', actor.actorType],
        ['url', client.remote],
      ]),
    )
  }
}
