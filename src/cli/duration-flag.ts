import {Flags} from '@oclif/core'

import {UsageError} from '../errors.js'

const UNIT_MS: Record<string, number> = {s: 1000, m: 60_000, h: 3_600_000}

/** Milliseconds of a duration written `90s`, `30m` or `2h`; a bare number is in minutes. */
export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([smh]?)$/.exec(text.trim())
  const ms = match ? Number(match[1]) * UNIT_MS[match[2] || 'm'] : Number.NaN
  if (!(ms >= 1000)) throw new UsageError(`${flag} takes a duration of at least one second such as 90s, 30m or 2h, not "${text}"`)
  return ms
}

/** A flag holding a duration, parsed to milliseconds, with a default. */
export function durationFlag(options: {description: string; defaultMs: number; defaultHelp: string}) {
  return Flags.custom<number>({
    description: options.description,
    default: options.defaultMs,
    defaultHelp: async () => options.defaultHelp,
    parse: async (input, _context, flag) => parseDuration(input, `--${flag.name}`),
  })()
}
