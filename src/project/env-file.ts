import {ExpectedError} from '../errors.js'
import type {ProjectFiles} from './files.js'
import {interpolateString, type VariableLookup} from './interpolation.js'

const KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/

export interface EnvFileOptions {
  /** Names the file in errors. */
  fileName: string
  /** Where `${VAR}` in unquoted and double-quoted values, and a bare `KEY` line, look after the file's own earlier lines. */
  lookup?: VariableLookup
}

const DOUBLE_QUOTED_ESCAPES: Record<string, string> = {n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\', $: '$$'}

/** A quoted value that may run over several lines: its text and where the line after it starts. */
function readQuoted(text: string, start: number, quote: string): {raw: string; end: number} | undefined {
  for (let index = start; index < text.length; index++) {
    if (quote === '"' && text[index] === '\\') index++
    else if (text[index] === quote) return {raw: text.slice(start, index), end: index + 1}
  }

  return undefined
}

function lineNumberAt(text: string, offset: number): number {
  return text.slice(0, offset).split('\n').length
}

/**
 * Parses an env file as compose reads `.env` and `env_file:`: `KEY=VALUE` lines, an optional `export `, blank lines
 * and `#` comments; an unquoted value is trimmed and loses what follows ` #`; a single-quoted value is literal; a
 * double-quoted one knows `\n`, `\t`, `\"`, `\\` and may span lines. `${VAR}` in unquoted and double-quoted values is
 * substituted from the lines above, then `lookup`. A line with a bare `KEY` takes its value from `lookup`, and is
 * left out when that has none. Later lines win.
 */
export function parseEnvFile(text: string, options: EnvFileOptions): Record<string, string> {
  const values: Record<string, string> = {}
  const lookup: VariableLookup = (name) => (Object.hasOwn(values, name) ? values[name] : options.lookup?.(name))
  const source = text.replace(/^\uFEFF/, '').replaceAll('\r\n', '\n')
  let offset = 0
  while (offset < source.length) {
    let lineEnd = source.indexOf('\n', offset)
    if (lineEnd === -1) lineEnd = source.length
    const line = source.slice(offset, lineEnd)
    const lineNumber = lineNumberAt(source, offset)
    const where = `${options.fileName}:${lineNumber}`
    const trimmed = line.trim()
    if (trimmed === '' || trimmed.startsWith('#')) {
      offset = lineEnd + 1
      continue
    }

    const statement = trimmed.replace(/^export\s+/, '')
    const separator = statement.indexOf('=')
    const key = (separator === -1 ? statement : statement.slice(0, separator)).trim()
    if (!KEY.test(key)) throw new ExpectedError(`${where}: "${key}" is not a variable name — write KEY=VALUE lines`)
    if (separator === -1) {
      const inherited = options.lookup?.(key)
      if (inherited !== undefined) values[key] = inherited
      offset = lineEnd + 1
      continue
    }

    const valueStart = offset + line.indexOf(statement) + separator + 1
    const afterEquals = source.slice(valueStart, lineEnd).replace(/^[ \t]+/, '')
    const quote = afterEquals[0]
    if (quote === '"' || quote === "'") {
      const quoteStart = source.indexOf(quote, valueStart)
      const quoted = readQuoted(source, quoteStart + 1, quote)
      if (!quoted) throw new ExpectedError(`${where}: the value of ${key} opens a ${quote === '"' ? 'double' : 'single'} quote that is never closed`)
      const rest = source.slice(quoted.end, source.indexOf('\n', quoted.end) === -1 ? source.length : source.indexOf('\n', quoted.end)).trim()
      if (rest !== '' && !rest.startsWith('#')) throw new ExpectedError(`${where}: the value of ${key} has "${rest}" after its closing quote`)
      values[key] =
        quote === "'"
          ? quoted.raw
          : interpolateString(
              quoted.raw.replaceAll(/\\(.)/gs, (escape, char: string) => DOUBLE_QUOTED_ESCAPES[char] ?? escape),
              {lookup, where: `${where}: ${key}`},
            )
      const nextLine = source.indexOf('\n', quoted.end)
      offset = nextLine === -1 ? source.length : nextLine + 1
      continue
    }

    const comment = afterEquals.indexOf(' #')
    const value = (comment === -1 ? afterEquals : afterEquals.slice(0, comment)).trim()
    values[key] = interpolateString(value, {lookup, where: `${where}: ${key}`})
    offset = lineEnd + 1
  }

  return values
}

/** Reads and parses an env file of a project; `required: false` makes a missing file an empty one. */
export async function readEnvFile(files: ProjectFiles, relativePath: string, options: EnvFileOptions & {required: boolean}): Promise<Record<string, string>> {
  const text = await files.readText(relativePath)
  if (text === undefined && !options.required) return {}
  if (text === undefined) throw new ExpectedError(`${options.fileName} does not exist (${files.describe(relativePath)}) — create it or fix the path`)
  return parseEnvFile(text, options)
}
