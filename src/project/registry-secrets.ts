import {readFile} from 'node:fs/promises'

import {parse as parseYaml} from 'yaml'

import {ExpectedError} from '../errors.js'

/**
 * Where balena-cli puts the registry credentials of `--registry-secrets` in the upload, for the builder's pulls:
 * `{"<registry host[:port]>": {"username", "password"}}`, the empty name standing for Docker Hub.
 */
export const REGISTRY_SECRETS_PATH = '.balena/registry-secrets.json'

export type RegistrySecrets = Record<string, {username: string; password: string}>

/** Registry credentials from JSON (or YAML, which `push --registry-secrets` also takes); `what` names the file in errors. */
export function parseRegistrySecrets(text: string, what: string, format: 'json' | 'yaml' = 'json'): RegistrySecrets {
  let parsed: unknown
  try {
    parsed = format === 'json' ? JSON.parse(text) : parseYaml(text)
  } catch {
    throw new ExpectedError(`${what} is not valid ${format === 'json' ? 'JSON' : 'YAML or JSON'} — it maps registry hosts to {"username", "password"}`)
  }

  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ExpectedError(`${what} must be a ${format === 'json' ? 'JSON' : 'YAML or JSON'} object of registry hosts to {"username", "password"}`)
  const secrets: RegistrySecrets = {}
  for (const [registry, entry] of Object.entries(parsed as Record<string, unknown>)) {
    const {username, password} = (entry ?? {}) as Record<string, unknown>
    if (typeof username !== 'string' || typeof password !== 'string') throw new ExpectedError(`${what}: the entry of "${registry}" needs a string "username" and "password"`)
    secrets[registry] = {username, password}
  }

  return secrets
}

/**
 * The file of `push --registry-secrets` (YAML or JSON, as balena-cli takes it), checked and turned into the JSON the
 * builder reads at REGISTRY_SECRETS_PATH.
 */
export async function readRegistrySecretsFile(file: string): Promise<string> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    throw new ExpectedError(`cannot read the registry secrets file ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, {cause: error})
  }

  return JSON.stringify(parseRegistrySecrets(text, file, 'yaml'))
}
