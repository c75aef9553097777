import {ExpectedError, UsageError} from '../errors.js'
import {readBootFile, writeBootFiles, type BootFile} from './boot-files.js'
import type {BootPartition} from './boot-partition.js'

/** The config.json on the boot partition of an image or a flashed drive. */
export async function readConfigJson(target: string): Promise<Record<string, unknown>> {
  const text = (await readBootFile(target, 'config.json')).toString('utf8')
  try {
    const parsed: unknown = JSON.parse(text)
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object')
    return parsed as Record<string, unknown>
  } catch (error) {
    throw new ExpectedError(`config.json on ${target} is not a JSON object (${(error as Error).message})`)
  }
}

export async function writeConfigJson(target: string, config: Record<string, unknown>, extraFiles: BootFile[] = []): Promise<BootPartition> {
  return writeBootFiles(target, [{path: 'config.json', content: JSON.stringify(config)}, ...extraFiles])
}

/**
 * Sets `key` (dots for nested objects: `os.sshKeys`) to `value`: a value whose current one is a number or a boolean
 * keeps that type; anything else is stored as a string.
 */
export function setConfigValue(config: Record<string, unknown>, key: string, value: string): Record<string, unknown> {
  const path = key.split('.')
  if (path.some((part) => part === '' || part === '__proto__' || part === 'constructor' || part === 'prototype')) throw new UsageError(`invalid key "${key}"`)
  const result = structuredClone(config)
  let node: Record<string, unknown> = result
  for (const part of path.slice(0, -1)) {
    const next = node[part]
    if (next === undefined) node[part] = {}
    else if (typeof next !== 'object' || next === null || Array.isArray(next)) throw new UsageError(`"${part}" in config.json is not an object, so "${key}" cannot be set`)
    node = node[part] as Record<string, unknown>
  }

  const last = path.at(-1)!
  const current = node[last]
  if (typeof current === 'number') {
    const number = Number(value)
    if (value.trim() === '' || !Number.isFinite(number)) throw new UsageError(`"${key}" is a number in config.json; "${value}" is not`)
    node[last] = number
  } else if (typeof current === 'boolean') {
    if (value !== 'true' && value !== 'false') throw new UsageError(`"${key}" is true or false in config.json; "${value}" is neither`)
    node[last] = value === 'true'
  } else {
    node[last] = value
  }

  return result
}
