import {rm} from 'node:fs/promises'
import path from 'node:path'

import {readTextIfPresent, writeFileAtomic} from '../atomic-file.js'
import {UsageError} from '../errors.js'
import {type EndpointOverrides, endpointOverridesFrom} from '../sdk/endpoints.js'

export const DEFAULT_URL = 'http://127.0.0.1:7171'

export interface StoredCredentials {
  url: string
  token: string
}

/** Where the remote and the token come from: the environment first, then what `login` stored. */
export interface ResolvedRemote {
  url: string
  /** Where the URL came from: `FLOTILLA_URL`, what `login` stored, or the default. */
  urlSource: 'environment' | 'login' | 'default'
  token?: string
  /** Where the token came from: `FLOTILLA_TOKEN`, or what `login` stored; undefined without one. */
  tokenSource?: 'environment' | 'login'
  /** `FLOTILLA_BUILDER_URL`, `FLOTILLA_TUNNEL_URL`, `FLOTILLA_SSH_HOST`. */
  endpointOverrides: EndpointOverrides
}

const DOMAIN = /^(?=.{1,253}$)[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?(?:\.[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?)+$/i
const IPV4 = /^\d{1,3}(?:\.\d{1,3}){3}$/

/**
 * A remote as a person types it, checked before anything is asked of it: a flotilla server URL with its scheme
 * (`http://127.0.0.1:7171`) or a balena-style domain (`balena-cloud.com`). `setting` names where it came from.
 */
export function checkRemote(value: string, setting: string): string {
  const remote = value.trim()
  let url: URL | undefined
  if (/^https?:\/\//i.test(remote)) {
    try {
      url = new URL(remote)
    } catch {}

    if (url?.hostname) return remote.replace(/\/+$/, '')
  } else if (DOMAIN.test(remote) && !IPV4.test(remote)) {
    return remote.toLowerCase()
  }

  const hostAndPort = /^(?:[a-z][a-z\d+.-]*:\/*)?([\w.-]+(?::\d{1,5})?)\/?$/i.exec(remote)?.[1]
  const meant = hostAndPort && (IPV4.test(hostAndPort.split(':')[0]) || hostAndPort.includes(':') || /^localhost$/i.test(hostAndPort)) ? ` — did you mean "http://${hostAndPort}"?` : ''
  throw new UsageError(
    `${setting} must be a server URL with http:// or https:// (like ${DEFAULT_URL}) or a balena-style domain (like balena-cloud.com), not "${value}"${meant}`,
  )
}

/** An environment variable, undefined when unset or empty (`FLOTILLA_TOKEN= cmd` means "no token from here"). */
function setting(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim()
  return value ? value : undefined
}

async function readJson<T>(file: string): Promise<T | undefined> {
  const text = await readTextIfPresent(file)
  return text === undefined ? undefined : (JSON.parse(text) as T)
}

export class SettingsStore {
  constructor(
    private readonly configDir: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  get credentialsFile(): string {
    return path.join(this.configDir, 'credentials.json')
  }

  async credentials(): Promise<StoredCredentials | undefined> {
    return readJson<StoredCredentials>(this.credentialsFile)
  }

  async resolveRemote(): Promise<ResolvedRemote> {
    const stored = await this.credentials()
    const fromEnvironment = setting(this.env, 'FLOTILLA_URL')
    const url = fromEnvironment ? checkRemote(fromEnvironment, 'FLOTILLA_URL') : (stored?.url ?? DEFAULT_URL)
    const environmentToken = setting(this.env, 'FLOTILLA_TOKEN')
    const storedToken = stored && stored.url === url ? stored.token : undefined
    const tokenSource = environmentToken ? 'environment' : storedToken ? 'login' : undefined
    const urlSource = fromEnvironment ? 'environment' : stored ? 'login' : 'default'
    return {url, urlSource, token: environmentToken ?? storedToken, tokenSource, endpointOverrides: endpointOverridesFrom(this.env)}
  }

  async saveCredentials(credentials: StoredCredentials): Promise<void> {
    await writeFileAtomic(this.credentialsFile, JSON.stringify(credentials, null, 2) + '\n', 0o600)
  }

  async clearCredentials(): Promise<boolean> {
    const existed = (await this.credentials()) !== undefined
    await rm(this.credentialsFile, {force: true})
    return existed
  }
}
