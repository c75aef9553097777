import {Chalk, type ChalkInstance} from 'chalk'

export interface Column<T> {
  header: string
  value: (row: T) => unknown
}

export interface OutputOptions {
  json: boolean
  color: boolean
  stdout?: NodeJS.WriteStream
  stderr?: NodeJS.WriteStream
}

const ISO_TIMESTAMP = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d+(Z|[+-]\d\d:\d\d)$/
const ANSI_SGR = /\u001B\[[\d;]*m/g
/** The narrowest a table column is cut to, so that a cut value still says what it was. */
const MIN_CUT_WIDTH = 8

function display(value: unknown): string {
  if (value === null || value === undefined) return ''
  if (Array.isArray(value)) return value.map(display).join(', ')
  if (typeof value === 'object') return JSON.stringify(value)
  // People read timestamps to the second; --json keeps the API's milliseconds.
  return String(value).replace(ISO_TIMESTAMP, '$1$2')
}

/** The columns a value takes on a terminal: its characters without colour codes. */
export function visibleLength(text: string): number {
  return text.replaceAll(ANSI_SGR, '').length
}

/** A cell padded to `width` visible columns, or cut to them with "…" (colour dropped from what is cut). */
function fit(text: string, width: number, pad: boolean): string {
  const length = visibleLength(text)
  if (length > width) return `${text.replaceAll(ANSI_SGR, '').slice(0, width - 1)}…`
  return pad ? text + ' '.repeat(width - length) : text
}

/**
 * Column widths that fit `available` columns when they can: the widest column gives way first, down to
 * MIN_CUT_WIDTH (or its header), so short columns (UUID, ONLINE) stay whole.
 */
export function fitWidths(widths: number[], minimums: number[], available: number | undefined): number[] {
  const fitted = [...widths]
  if (!available) return fitted
  let excess = fitted.reduce((sum, width) => sum + width, 0) - available
  while (excess > 0) {
    let widest = -1
    for (const [index, width] of fitted.entries()) if (width > minimums[index] && (widest < 0 || width > fitted[widest])) widest = index
    if (widest < 0) break
    fitted[widest]--
    excess--
  }

  return fitted
}

/**
 * The one output layer: results go to stdout (a table, a key/value block or JSON), everything else to stderr.
 * Colour is decided once here, from `--no-color`, `NO_COLOR`, `--json` and whether stdout is a terminal.
 */
export class Output {
  readonly json: boolean
  readonly color: ChalkInstance
  readonly stdout: NodeJS.WriteStream
  readonly stderr: NodeJS.WriteStream
  private progressShown = false

  constructor(options: OutputOptions) {
    this.json = options.json
    this.stdout = options.stdout ?? process.stdout
    this.stderr = options.stderr ?? process.stderr
    this.color = new Chalk({level: options.color ? 1 : 0})
  }

  get isInteractive(): boolean {
    return Boolean(this.stdout.isTTY) && !this.json
  }

  /** Prints data as JSON (`--json`), or hands over to the human rendering. */
  result(data: unknown, human: () => void): void {
    if (this.json) this.printJson(data)
    else human()
  }

  /** What every `rm` command answers: `{"removed": [ids or names]}` for `--json` (always a list), else the message. */
  removed(identifiers: Array<string | number>, message: string): void {
    this.result({removed: identifiers}, () => this.success(message))
  }

  printJson(data: unknown): void {
    this.stdout.write(JSON.stringify(data, null, 2) + '\n')
  }

  /** One JSON object a line, for event streams read by scripts. */
  printJsonLine(data: unknown): void {
    this.stdout.write(JSON.stringify(data) + '\n')
  }

  line(text = ''): void {
    this.stdout.write(text + '\n')
  }

  /** Rows under a header, padded by what shows on screen and, on a terminal, cut to its width rather than wrapped. */
  table<T>(rows: T[], columns: Column<T>[]): void {
    const cells = rows.map((row) => columns.map((column) => display(column.value(row))))
    const natural = columns.map((column, index) => Math.max(column.header.length, ...cells.map((row) => visibleLength(row[index]))))
    const minimums = columns.map((column, index) => Math.min(natural[index], Math.max(column.header.length, MIN_CUT_WIDTH)))
    const terminalWidth = this.stdout.isTTY ? this.stdout.columns : undefined
    const widths = fitWidths(natural, minimums, terminalWidth && terminalWidth - 2 * (columns.length - 1))
    const format = (values: string[]) =>
      values
        .map((value, index) => fit(value, widths[index], index < values.length - 1))
        .join('  ')
        .trimEnd()
    this.line(this.color.bold(format(columns.map((column) => column.header))))
    for (const row of cells) this.line(format(row))
  }

  keyValue(pairs: Array<[string, unknown]>): void {
    const width = Math.max(...pairs.map(([key]) => key.length))
    for (const [key, value] of pairs) this.line(`${this.color.bold(key.padEnd(width))}  ${display(value)}`)
  }

  /**
   * A status line redrawn in place on stderr (upload progress): only on a terminal and without --json. Call
   * `endProgress()` before writing anything else to stderr.
   */
  progress(text: string): void {
    if (this.json || !this.stderr.isTTY) return
    this.stderr.write(`\r\u001B[2K${text}`)
    this.progressShown = true
  }

  /** Clears the status line of `progress()`, if one is shown. */
  endProgress(): void {
    if (!this.progressShown) return
    this.stderr.write('\r\u001B[2K')
    this.progressShown = false
  }

  /** A message about what happened, for people: stderr, so stdout stays the result. */
  info(text: string): void {
    this.stderr.write(text + '\n')
  }

  success(text: string): void {
    this.info(this.color.green(text))
  }

  warn(text: string): void {
    this.stderr.write(this.color.yellow(`warning: ${text}`) + '\n')
  }

  error(text: string): void {
    this.stderr.write(`${this.color.red('error:')} ${text}\n`)
  }
}
