import {Args} from '@oclif/core'

import {FlotillaCommand} from '../cli/base.js'
import {type CompletableCommand, completionScript, type Shell, SHELLS} from '../cli/completion.js'

export default class Completion extends FlotillaCommand {
  static override summary = 'Print a shell completion script for bash, zsh or fish'
  static override description = 'Completes command names and the flags of the command typed so far.'
  static override examples = [
    'source <(<%= config.bin %> completion bash)             # bash, this shell only; add it to ~/.bashrc to keep it',
    '<%= config.bin %> completion zsh >> ~/.zshrc',
    '<%= config.bin %> completion fish > ~/.config/fish/completions/<%= config.bin %>.fish',
  ]

  static override args = {shell: Args.string({required: true, options: [...SHELLS], description: 'the shell to complete in'})}

  async run(): Promise<void> {
    const {args} = await this.parse(Completion)
    const commands: CompletableCommand[] = this.config.commands
      .filter((command) => !command.hidden)
      .flatMap((command) => {
        const flags = Object.entries(command.flags)
          .filter(([, flag]) => !flag.hidden)
          .flatMap(([name, flag]) => [`--${name}`, ...(flag.char ? [`-${flag.char}`] : [])])
        return [command.id, ...command.aliases].map((id) => ({id: id.replaceAll(':', ' '), flags: flags.sort()}))
      })
    process.stdout.write(completionScript(args.shell as Shell, this.config.bin, commands))
  }
}
