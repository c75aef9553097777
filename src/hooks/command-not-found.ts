import type {Hook} from '@oclif/core'

import {closestMatch} from '../cli/suggestions.js'

const hook: Hook.CommandNotFound = async function (options) {
  const typed = options.id.replaceAll(':', ' ')
  const candidates = [...options.config.commandIDs, ...options.config.commands.flatMap((command) => command.aliases)].map((id) =>
    id.replaceAll(':', ' '),
  )
  const suggestion = closestMatch(typed, candidates)
  const hint = suggestion ? ` — did you mean "${options.config.bin} ${suggestion}"?` : ` — run "${options.config.bin} help" to see the commands`
  process.stderr.write(`error: "${typed}" is not a ${options.config.bin} command${hint}\n`)
  this.exit(2)
}

export default hook
