import type {Hook} from '@oclif/core'

/** Edit distance between two command names, for suggesting what the user meant. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({length: b.length + 1}, (_, index) => index)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1))
    }

    previous = current
  }

  return previous[b.length]
}

export function closestCommand(typed: string, candidates: string[]): string | undefined {
  let best: {id: string; distance: number} | undefined
  for (const id of candidates) {
    const distance = editDistance(typed, id)
    if (!best || distance < best.distance) best = {id, distance}
  }

  return best && best.distance <= Math.max(2, Math.floor(typed.length / 3)) ? best.id : undefined
}

const hook: Hook.CommandNotFound = async function (options) {
  const typed = options.id.replaceAll(':', ' ')
  const candidates = [...options.config.commandIDs, ...options.config.commands.flatMap((command) => command.aliases)].map((id) =>
    id.replaceAll(':', ' '),
  )
  const suggestion = closestCommand(typed, candidates)
  const hint = suggestion ? ` — did you mean "${options.config.bin} ${suggestion}"?` : ` — run "${options.config.bin} help" to see the commands`
  process.stderr.write(`error: "${typed}" is not a ${options.config.bin} command${hint}\n`)
  this.exit(2)
}

export default hook
