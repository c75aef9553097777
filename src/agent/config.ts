import {readFile} from 'node:fs/promises'

import {writeFileAtomic} from '../atomic-file.js'
import {ExpectedError} from '../errors.js'
import {type ConfigJson, parseConfigJson} from '../protocol/config-json.js'

export async function loadConfig(configPath: string): Promise<ConfigJson> {
  let text: string
  try {
    text = await readFile(configPath, 'utf8')
  } catch (error) {
    throw new ExpectedError(`cannot read ${configPath}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {cause: error})
  }

  return parseConfigJson(text, configPath)
}

/** Rewrites config.json in one step (it holds keys: readable by its owner only), so power loss never leaves half of it. */
export async function saveConfig(configPath: string, config: ConfigJson): Promise<void> {
  await writeFileAtomic(configPath, `${JSON.stringify(config, null, 2)}\n`, 0o600)
}
