import {readFile, rm} from 'node:fs/promises'
import path from 'node:path'

import {writeFileAtomic} from '../atomic-file.js'
import {type EndpointOverrides, endpointOverridesFrom} from '../sdk/endpoints.js'

export const DEFAULT_URL = 'http://127.0.0.1:7171'

export interface StoredCredentials {
  url: string
  token: string
}

/** Where the remote and the token come from: the environment first, then what `login` stored. */
export interface ResolvedRemote {
  url: string
  token?: string
  /** `FLOTILLA_BUILDER_URL`, `FLOTILLA_TUNNEL_URL`, `FLOTILLA_SSH_HOST`. */
  endpointOverrides: EndpointOverrides
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
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
    const url = this.env.FLOTILLA_URL || stored?.url || DEFAULT_URL
    const token = this.env.FLOTILLA_TOKEN || (stored && stored.url === url ? stored.token : undefined)
    return {url, token, endpointOverrides: endpointOverridesFrom(this.env)}
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
