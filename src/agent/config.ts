import {readFile} from 'node:fs/promises'

import {writeFileAtomic} from '../atomic-file.js'
import {ExpectedError} from '../errors.js'
import {type ConfigJson, parseConfigJson} from '../protocol/config-json.js'

/** Between target-state polls when config.json says nothing (balena's default too). */
const DEFAULT_POLL_INTERVAL_MS = 15 * 60_000

/**
 * The shortest pause between polls the agent accepts from config.json: balena-supervisor waits 10 s before it
 * retries loading its own config and its poll back-off starts at 15 s, and anything shorter makes every device a
 * load on the server (each poll is a heartbeat write). Shorter values are raised to it.
 */
export const MIN_POLL_INTERVAL_MS = 10_000

/**
 * The pause between target-state polls config.json asks for, in milliseconds: a positive number (balena also
 * writes it as a numeric string), raised to the floor. Anything else is an error naming the field and the fix.
 */
export function pollIntervalOf(config: ConfigJson, source = 'config.json'): {intervalMs: number; raisedFrom?: number} {
  const value: unknown = config.appUpdatePollInterval
  if (value === undefined || value === null) return {intervalMs: DEFAULT_POLL_INTERVAL_MS}
  const milliseconds = typeof value === 'string' && value.trim() !== '' ? Number(value) : value
  if (typeof milliseconds !== 'number' || !Number.isFinite(milliseconds) || milliseconds <= 0) {
    throw new ExpectedError(`${source} has "appUpdatePollInterval": ${JSON.stringify(value)}, which is not a positive number of milliseconds; set it to e.g. 900000 (15 minutes) or remove it`)
  }

  return milliseconds < MIN_POLL_INTERVAL_MS ? {intervalMs: MIN_POLL_INTERVAL_MS, raisedFrom: milliseconds} : {intervalMs: milliseconds}
}

/** Reads and checks config.json: one error line naming what is wrong, before the agent starts anything. */
export async function loadConfig(configPath: string): Promise<ConfigJson> {
  let text: string
  try {
    text = await readFile(configPath, 'utf8')
  } catch (error) {
    throw new ExpectedError(`cannot read ${configPath}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {cause: error})
  }

  const config = parseConfigJson(text, configPath)
  pollIntervalOf(config, configPath)
  return config
}

/** Rewrites config.json in one step (it holds keys: readable by its owner only), so power loss never leaves half of it. */
export async function saveConfig(configPath: string, config: ConfigJson): Promise<void> {
  await writeFileAtomic(configPath, `${JSON.stringify(config, null, 2)}\n`, 0o600)
}
