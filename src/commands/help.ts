import {Args, Command, loadHelpClass} from '@oclif/core'

import {closestMatch} from '../cli/suggestions.js'

/** `flotilla help [COMMAND]`: the help of a topic or command, as `--help` and `-h` show it. */
export default class HelpCommand extends Command {
  static override summary = 'Show help for flotilla, a topic or a command'
  static override examples = ['<%= config.bin %> help', '<%= config.bin %> help fleet', '<%= config.bin %> help fleet create']
  static override strict = false
  static override args = {command: Args.string({description: 'topic or command, as you would type it (fleet create)'})}

  async run(): Promise<void> {
    const {argv} = await this.parse(HelpCommand)
    const words = (argv as string[]).filter((word) => !word.startsWith('-'))
    const id = words.join(':')
    if (id && !this.config.findCommand(id) && !this.config.findTopic(id)) {
      const known = [...this.config.commandIDs, ...this.config.topics.map((topic) => topic.name)].map((name) => name.replaceAll(':', ' '))
      const meant = closestMatch(words.join(' '), known)
      const hint = meant ? `did you mean "${this.config.bin} help ${meant}"?` : `run "${this.config.bin} help" to see the commands`
      process.stderr.write(`error: "${words.join(' ')}" is not a ${this.config.bin} command or topic — ${hint}\n`)
      this.exit(2)
    }

    const Help = await loadHelpClass(this.config)
    await new Help(this.config).showHelp(words)
  }
}
