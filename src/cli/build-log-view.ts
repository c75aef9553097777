import type {BuildEvent} from '../protocol/build-events.js'
import type {Output} from './output.js'

const SERVICE_PREFIX = /^\[([^\]]+)\]\s?/
const COLOURS = ['cyan', 'magenta', 'yellow', 'blue', 'green', 'red'] as const
const FAILURE_CONTEXT_LINES = 10

/**
 * Renders the builder's log for people: a colour per service prefix, progress (`replace`) lines redrawn in place
 * on a terminal and skipped elsewhere, and on failure the failing service's last lines again.
 */
export class BuildLogView {
  private readonly colours = new Map<string, (typeof COLOURS)[number]>()
  private readonly recentLines = new Map<string, string[]>()
  private lastWasReplace = false

  constructor(private readonly output: Output) {}

  show(event: BuildEvent): void {
    if (!('message' in event)) return
    const interactive = Boolean(this.output.stderr.isTTY)
    if (event.replace && !interactive) return
    if (event.replace && this.lastWasReplace) this.output.stderr.write('\u001B[1A\u001B[2K')
    this.lastWasReplace = Boolean(event.replace)
    const service = SERVICE_PREFIX.exec(event.message)?.[1]
    if (service && !event.replace) this.remember(service, event.message)
    let text = event.message
    if (service) {
      const colour = this.colourOf(service)
      text = text.replace(SERVICE_PREFIX, (prefix) => this.output.color[colour](prefix))
    }

    if (event.isError) text = this.output.color.red(text)
    else if (event.isSuccess) text = this.output.color.green(text)
    this.output.stderr.write(text + '\n')
  }

  /** The last lines of the service an error names, or of the last service that printed anything. */
  failureContext(errorMessage: string): string[] {
    const service = SERVICE_PREFIX.exec(errorMessage)?.[1] ?? [...this.recentLines.keys()].at(-1)
    return service ? (this.recentLines.get(service) ?? []) : []
  }

  private remember(service: string, line: string): void {
    const lines = this.recentLines.get(service) ?? []
    lines.push(line)
    if (lines.length > FAILURE_CONTEXT_LINES) lines.shift()
    this.recentLines.delete(service)
    this.recentLines.set(service, lines)
  }

  private colourOf(service: string): (typeof COLOURS)[number] {
    let colour = this.colours.get(service)
    if (!colour) {
      colour = COLOURS[this.colours.size % COLOURS.length]
      this.colours.set(service, colour)
    }

    return colour
  }
}
