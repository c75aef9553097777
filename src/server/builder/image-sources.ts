import type Docker from 'dockerode'

import type {ProjectFiles} from '../../project/files.js'
import {parseRegistrySecrets, REGISTRY_SECRETS_PATH, type RegistrySecrets} from '../../project/registry-secrets.js'

export {REGISTRY_SECRETS_PATH} from '../../project/registry-secrets.js'
export type {RegistrySecrets} from '../../project/registry-secrets.js'

const DOCKER_HUB = 'docker.io'
const DOCKER_HUB_NAMES = new Set(['', 'docker.io', 'index.docker.io', 'registry-1.docker.io', 'https://index.docker.io/v1/'])

/** The registry credentials the upload brings, Docker Hub's under one name; none when it has no secrets file. A malformed one is the user's to fix. */
export async function readRegistrySecrets(project: ProjectFiles): Promise<RegistrySecrets> {
  const text = await project.readText(REGISTRY_SECRETS_PATH)
  if (text === undefined) return {}
  const secrets: RegistrySecrets = {}
  for (const [registry, entry] of Object.entries(parseRegistrySecrets(text, REGISTRY_SECRETS_PATH))) secrets[DOCKER_HUB_NAMES.has(registry) ? DOCKER_HUB : registry] = entry
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

/** Where the engine looks up Docker Hub's credentials in a build's registry config, as the docker CLI sends them. */
const DOCKER_HUB_INDEX = 'https://index.docker.io/v1/'

/** The upload's credentials as a build's registry config (X-Registry-Config), for the pulls of its `FROM` images. */
export function buildRegistryConfig(secrets: RegistrySecrets): Record<string, {username: string; password: string; serveraddress: string}> {
  return Object.fromEntries(
    Object.entries(secrets).map(([registry, {username, password}]) => {
      const address = registry === DOCKER_HUB ? DOCKER_HUB_INDEX : registry
      return [address, {username, password, serveraddress: address}]
    }),
  )
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
