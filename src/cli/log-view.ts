import type {Output} from './output.js'

/** The fields of a log line this view prints. */
export interface PrintableLogLine {
  message: string
  timestamp: number
  isSystem: boolean
  serviceId?: number
  serviceName?: string
}

const SERVICE_COLORS = ['cyan', 'green', 'yellow', 'magenta', 'blue', 'red'] as const

/** One colour a service, the same on every run (a hash of its name), so a glance tells services apart. */
function colorOf(service: string): (typeof SERVICE_COLORS)[number] {
  let hash = 0
  for (const character of service) hash = (hash * 31 + character.codePointAt(0)!) >>> 0
  return SERVICE_COLORS[hash % SERVICE_COLORS.length]
}

/** `[<ISO timestamp>] [<service>] <message>`, or `[<ts>] <message>` for system lines; `--json` prints the line as is. */
export function printLogLine(output: Output, line: PrintableLogLine): void {
  if (output.json) {
    output.printJsonLine(line)
    return
  }

  const time = `[${new Date(line.timestamp).toISOString()}]`
  const service = line.serviceName ?? (line.serviceId === undefined ? undefined : `service ${line.serviceId}`)
  if (line.isSystem || service === undefined) {
    output.line(`${output.color.dim(time)} ${line.message}`)
    return
  }

  output.line(`${output.color.dim(time)} ${output.color[colorOf(service)](`[${service}]`)} ${line.message}`)
}
