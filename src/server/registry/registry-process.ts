import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdir, writeFile} from 'node:fs/promises'

import {stringify} from 'yaml'

/** Debian's docker-registry (distribution v2), the registry `server start` runs. */
export const REGISTRY_BINARY = '/usr/bin/docker-registry'

const START_DEADLINE_MS = 15_000
const STOP_DEADLINE_MS = 5000

/** How a registry checks tokens (distribution's `auth.token`): where clients get them and whose signature it trusts. */
export interface RegistryTokenAuth {
  /** The token endpoint clients are sent to: `<public url>/auth/v1/token`. */
  realm: string
  /** The registry's name in tokens (`aud`) and in the token requests clients make. */
  service: string
  issuer: string
  /** PEM certificate(s) of the keys tokens are signed with. */
  rootCertBundle: string
}

export interface RegistryProcessOptions {
  /** `127.0.0.1:<port>`: where it listens, as image names and `docker push` want it. */
  address: string
  storageDir: string
  configFile: string
  /** Without it the registry is open: anyone who reaches it may pull and push. */
  auth?: RegistryTokenAuth
  /** Called when the registry stops on its own (not by stop()). */
  onUnexpectedExit?: (reason: string) => void
}

export interface RegistryProcess {
  address: string
  pid: number
  stop(): Promise<void>
}

export class RegistryStartError extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
  ) {
    super(message)
    this.name = 'RegistryStartError'
  }
}

/** The registry's configuration file: filesystem storage, one loopback address, and token auth when asked. */
export function registryConfig(options: Pick<RegistryProcessOptions, 'address' | 'storageDir' | 'auth'>): string {
  return stringify({
    version: 0.1,
    log: {level: 'warn', accesslog: {disabled: true}},
    storage: {filesystem: {rootdirectory: options.storageDir}, delete: {enabled: true}},
    // The secret only signs upload state between requests to this one process.
    http: {addr: options.address, secret: randomBytes(24).toString('hex')},
    ...(options.auth && {
      auth: {token: {realm: options.auth.realm, service: options.auth.service, issuer: options.auth.issuer, rootcertbundle: options.auth.rootCertBundle}},
    }),
  })
}

/** Whether the registry answers its API root: 200 when open, 401 when it wants a token. */
async function answersV2(address: string): Promise<boolean> {
  try {
    const response = await fetch(`http://${address}/v2/`, {signal: AbortSignal.timeout(1000)})
    await response.body?.cancel()
    return response.status === 200 || response.status === 401
  } catch {
    return false
  }
}

/**
 * Starts Debian's docker-registry with a configuration written for it, resolving once `GET /v2/` answers; rejects
 * with what it printed when it stops or does not answer in time (RegistryStartError says whether its port was taken).
 */
export async function startRegistryProcess(options: RegistryProcessOptions): Promise<RegistryProcess> {
  await mkdir(options.storageDir, {recursive: true, mode: 0o700})
  await writeFile(options.configFile, registryConfig(options), {mode: 0o600})
  const child = spawn(REGISTRY_BINARY, ['serve', options.configFile], {stdio: ['ignore', 'ignore', 'pipe']})
  let stderr = ''
  let exitCode: number | null | undefined
  let started = false
  let stopping = false
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr = (stderr + chunk).slice(-4096)))
  child.once('error', (error) => (stderr += error.message))
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exitCode = code
      if (started && !stopping) options.onUnexpectedExit?.(`docker-registry exited (${code ?? signal}): ${stderr.trim()}`)
      resolve()
    }),
  )

  const stop = async () => {
    stopping = true
    if (child.pid === undefined || exitCode !== undefined) return
    child.kill('SIGTERM')
    const killTimer = setTimeout(() => child.kill('SIGKILL'), STOP_DEADLINE_MS)
    await exited
    clearTimeout(killTimer)
  }

  const deadline = Date.now() + START_DEADLINE_MS
  while (!(await answersV2(options.address))) {
    const failure =
      child.pid === undefined || exitCode !== undefined
        ? `docker-registry stopped (exit code ${exitCode}) before answering on ${options.address}: ${stderr.trim()}`
        : Date.now() > deadline
          ? `docker-registry did not answer on ${options.address} within ${START_DEADLINE_MS / 1000} s: ${stderr.trim()}`
          : undefined
    if (failure) {
      await stop()
      throw new RegistryStartError(failure, stderr.includes('address already in use'))
    }

    await new Promise((resolve) => setTimeout(resolve, 50))
  }

  started = true
  return {address: options.address, pid: child.pid as number, stop}
}
