import {FlotillaCommand} from '../../cli/base.js'

export default class SshKeyList extends FlotillaCommand {
  static override summary = 'List your SSH public keys'
  static override hiddenAliases = ['ssh-keys']
  static override examples = ['<%= config.bin %> ssh-key list', '<%= config.bin %> ssh-key list --json']

  async run(): Promise<void> {
    await this.parse(SshKeyList)
    const {listSshKeys} = await import('../../sdk/ssh-keys.js')
    const keys = await listSshKeys(await this.sdk())
    this.output.result(keys, () =>
      this.output.table(keys, [
        {header: 'ID', value: (key) => key.id},
        {header: 'NAME', value: (key) => key.title},
        {header: 'KEY', value: (key) => `${key.public_key.slice(0, 40)}…`},
      ]),
    )
  }
}
