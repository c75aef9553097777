import type Docker from 'dockerode'

import {ExpectedError} from '../../errors.js'
import type {ProjectFiles} from '../../project/files.js'

/**
 * Where balena-cli puts the registry credentials of `--registry-secrets` in the upload, for the builder's pulls:
 * `{"<registry host[:port]>": {"username", "password"}}`, the empty name standing for Docker Hub.
 */
export const REGISTRY_SECRETS_PATH = '.balena/registry-secrets.json'

export type RegistrySecrets = Record<string, {username: string; password: string}>

const DOCKER_HUB = 'docker.io'
const DOCKER_HUB_NAMES = new Set(['', 'docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/'])

/** The registry credentials the upload brings; none when it has no secrets file. A malformed one is the user's to fix. */
export async function readRegistrySecrets(project: ProjectFiles): Promise<RegistrySecrets> {
  const text = await project.readText(REGISTRY_SECRETS_PATH)
  if (text === undefined) return {}
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new ExpectedError(`${REGISTRY_SECRETS_PATH} is not valid JSON — it maps registry hosts to {"username", "password"}`)
  }

  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ExpectedError(`${REGISTRY_SECRETS_PATH} must be a JSON object of registry hosts to {"username", "password"}`)
  const secrets: RegistrySecrets = {}
  for (const [registry, entry] of Object.entries(parsed as Record<string, unknown>)) {
    const {username, password} = (entry ?? {}) as Record<string, unknown>
    if (typeof username !== 'string' || typeof password !== 'string') {
      throw new ExpectedError(`${REGISTRY_SECRETS_PATH}: the entry of "${registry}" needs a string "username" and "password"`)
    }

    secrets[DOCKER_HUB_NAMES.has(registry) ? DOCKER_HUB : registry] = {username, password}
  }

  return secrets
}

/** The registry host of an image reference, as Docker reads it: `docker.io` unless the first part looks like a host. */
export function registryOf(reference: string): string {
  const slash = reference.indexOf('/')
  if (slash === -1) return DOCKER_HUB
  const first = reference.slice(0, slash)
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first : DOCKER_HUB
}

/** The credentials the engine gets for pulling a reference, from the upload's secrets. */
export function pullCredentials(secrets: RegistrySecrets, reference: string): Docker.AuthConfig | undefined {
  const registry = registryOf(reference)
  const entry = secrets[registry]
  return entry && {username: entry.username, password: entry.password, serveraddress: registry}
}

/**
 * The same image on a mirror of Docker Hub (`server start --registry-mirror`): `redis:7` is
 * `<mirror>/library/redis:7` there. References naming another registry are pulled from it and get no mirror.
 */
export function mirroredReference(reference: string, mirror: string): string | undefined {
  if (registryOf(reference) !== DOCKER_HUB) return undefined
  const path = reference.startsWith(`${DOCKER_HUB}/`) ? reference.slice(DOCKER_HUB.length + 1) : reference
  const repository = path.split(/[:@]/)[0]
  return `${mirror}/${repository.includes('/') ? '' : 'library/'}${path}`
}
