import {readFile} from 'node:fs/promises'

import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {readStdin} from '../../cli/prompts.js'
import {ExpectedError} from '../../errors.js'

export default class SshKeyAdd extends FlotillaCommand {
  static override summary = 'Add an SSH public key to your user'
  static override description = 'The key lets you reach devices with "flotilla ssh". Without a path, the key is read from stdin.'
  static override examples = ['<%= config.bin %> ssh-key add laptop ~/.ssh/id_ed25519.pub', 'cat key.pub | <%= config.bin %> ssh-key add ci']
  static override args = {
    name: Args.string({required: true, description: 'a name for the key'}),
    // ignoreStdin: oclif would otherwise fill this argument with the key piped on stdin, and read it as a path.
    path: Args.string({required: false, ignoreStdin: true, description: 'path of the public key file (default: stdin)'}),
  }

  async run(): Promise<void> {
    const {args} = await this.parse(SshKeyAdd)
    let text: string
    try {
      text = args.path ? await readFile(args.path, 'utf8') : await readStdin()
    } catch (error) {
      throw new ExpectedError(`cannot read ${args.path}: ${(error as Error).message}`)
    }

    const {addSshKey} = await import('../../sdk/ssh-keys.js')
    const key = await addSshKey(await this.sdk(), args.name, text)
    this.output.result(key, () => this.output.success(`added SSH key "${key.title}" (id ${key.id})`))
  }
}
