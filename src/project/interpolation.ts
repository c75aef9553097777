import {ExpectedError} from '../errors.js'

/** Where a variable's value comes from: the pushing shell's environment over the project's `.env`, as compose has it. */
export type VariableLookup = (name: string) => string | undefined

export interface InterpolationOptions {
  lookup: VariableLookup
  /** Called once per variable that is unset and has no default (it becomes an empty string, as in compose). */
  onUnset?: (name: string) => void
  /** Names the value in errors, e.g. `docker-compose.yml: services.main.environment.PORT`. */
  where: string
}

const NAME = /^[_a-zA-Z][_a-zA-Z0-9]*/

function invalid(options: InterpolationOptions, text: string, why: string): ExpectedError {
  return new ExpectedError(`${options.where}: invalid interpolation in "${text}": ${why} — write "$$" for a literal "$"`)
}

/** The index of the `}` that closes the `${` whose content starts at `start`, skipping nested `${…}` and `$$`. */
function closingBrace(text: string, start: number): number {
  let depth = 0
  for (let index = start; index < text.length; index++) {
    const char = text[index]
    if (char === '$' && text[index + 1] === '$') {
      index++
    } else if (char === '$' && text[index + 1] === '{') {
      depth++
      index++
    } else if (char === '}') {
      if (depth === 0) return index
      depth--
    }
  }

  return -1
}

/** `${NAME…}`'s content: the name, then nothing or one of compose's operators and its word. */
function substituteBraced(content: string, text: string, options: InterpolationOptions): string {
  const name = NAME.exec(content)?.[0]
  if (name === undefined) throw invalid(options, text, `"\${${content}}" does not start with a variable name`)
  const rest = content.slice(name.length)
  const value = options.lookup(name)
  if (rest === '') return valueOrBlank(name, value, options)
  const operator = /^(:?[-?+])/.exec(rest)?.[1]
  if (operator === undefined) throw invalid(options, text, `"\${${content}}" has "${rest[0]}" after the name, where compose expects }, :-, -, :?, ?, :+ or +`)
  const word = rest.slice(operator.length)
  const unsetOrEmpty = operator.startsWith(':') ? value === undefined || value === '' : value === undefined
  switch (operator.at(-1)) {
    case '-': {
      return unsetOrEmpty ? interpolateString(word, options) : (value ?? '')
    }

    case '?': {
      if (!unsetOrEmpty) return value ?? ''
      const reason = interpolateString(word, options)
      throw new ExpectedError(`${options.where}: required variable ${name} is ${value === undefined ? 'not set' : 'empty'}${reason ? `: ${reason}` : ''} — set it in the shell or in the project's .env`)
    }

    default: {
      return unsetOrEmpty ? '' : interpolateString(word, options)
    }
  }
}

function valueOrBlank(name: string, value: string | undefined, options: InterpolationOptions): string {
  if (value !== undefined) return value
  options.onUnset?.(name)
  return ''
}

/**
 * Compose's variable substitution in one string: `$NAME`, `${NAME}`, `${NAME:-default}` (unset or empty),
 * `${NAME-default}` (unset), `${NAME:?error}` / `${NAME?error}` (fail), `${NAME:+other}` / `${NAME+other}`
 * (replace when set), and `$$` for a literal `$`. Defaults and messages may hold substitutions themselves.
 * A `$` that starts none of these is an error, as in compose.
 */
export function interpolateString(text: string, options: InterpolationOptions): string {
  if (!text.includes('$')) return text
  let result = ''
  let index = 0
  while (index < text.length) {
    const dollar = text.indexOf('$', index)
    if (dollar === -1) {
      result += text.slice(index)
      break
    }

    result += text.slice(index, dollar)
    const next = text[dollar + 1]
    if (next === '$') {
      result += '$'
      index = dollar + 2
    } else if (next === '{') {
      const end = closingBrace(text, dollar + 2)
      if (end === -1) throw invalid(options, text, `"\${" at character ${dollar + 1} is never closed with "}"`)
      result += substituteBraced(text.slice(dollar + 2, end), text, options)
      index = end + 1
    } else {
      const name = NAME.exec(text.slice(dollar + 1))?.[0]
      if (name === undefined) throw invalid(options, text, `"$" at character ${dollar + 1} is followed by neither a variable name nor "{"`)
      result += valueOrBlank(name, options.lookup(name), options)
      index = dollar + 1 + name.length
    }
  }

  return result
}

function pathOf(parent: string, key: string | number): string {
  return typeof key === 'number' ? `${parent}[${key}]` : parent === '' ? key : `${parent}.${key}`
}

/**
 * Substitutes variables in every string value of a parsed compose document (keys stay as they are, as in
 * compose), returning a new document. `fileName` names the file in errors, together with the value's path.
 */
export function interpolateDocument(document: unknown, fileName: string, lookup: VariableLookup, onUnset?: (name: string) => void): unknown {
  const walk = (value: unknown, where: string): unknown => {
    if (typeof value === 'string') return interpolateString(value, {lookup, onUnset, where: `${fileName}: ${where}`})
    if (Array.isArray(value)) return value.map((item, index) => walk(item, pathOf(where, index)))
    if (typeof value === 'object' && value !== null) {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, walk(item, pathOf(where, key))]))
    }

    return value
  }

  return walk(document, '')
}

/** The inverse of `$$`: a value written back into a compose file keeps its `$` literal when the file is read again. */
export function escapeDollars(document: unknown): unknown {
  if (typeof document === 'string') return document.replaceAll('$', '$$$$')
  if (Array.isArray(document)) return document.map(escapeDollars)
  if (typeof document === 'object' && document !== null) {
    return Object.fromEntries(Object.entries(document).map(([key, item]) => [key, escapeDollars(item)]))
  }

  return document
}
