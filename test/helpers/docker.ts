import {execFile} from 'node:child_process'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import {RegistryStartError, startRegistryProcess} from '../../src/server/registry/registry-process.js'
import {PROJECT_ROOT} from './cli.js'
import {freeLoopbackPort} from './net.js'

const run = promisify(execFile)

/** The local image every end-to-end build starts FROM; made by scripts/make-base-image.sh, never pulled. */
export const BASE_IMAGE = 'flotilla-test/busybox:latest'

async function runScript(name: string, args: string[] = []): Promise<void> {
  try {
    await run('bash', [path.join(PROJECT_ROOT, 'scripts', name), ...args], {timeout: 120_000})
  } catch (error) {
    const {stderr} = error as {stderr?: string}
    throw new Error(`scripts/${name} failed: ${stderr?.trim() || (error as Error).message}`)
  }
}

let dockerReady: Promise<void> | undefined
let baseImageReady: Promise<void> | undefined

/** A Docker engine that answers, started by scripts/ensure-docker.sh when installed but stopped; once per test process. Fails, never skips, when Docker is missing. */
export function ensureDocker(): Promise<void> {
  dockerReady ??= runScript('ensure-docker.sh').catch((error: unknown) => {
    dockerReady = undefined
    throw error
  })
  return dockerReady
}

/** The engine plus {@link BASE_IMAGE}, built from busybox-static when missing; once per test process. */
export function ensureBaseImage(): Promise<string> {
  baseImageReady ??= ensureDocker()
    .then(() => runScript('make-base-image.sh', [BASE_IMAGE]))
    .catch((error: unknown) => {
      baseImageReady = undefined
      throw error
    })
  return baseImageReady.then(() => BASE_IMAGE)
}

export interface RunningRegistry {
  /** `127.0.0.1:<port>`, as image names and `docker push` want it. */
  address: string
  stop(): Promise<void>
}

async function startRegistryAt(address: string): Promise<RunningRegistry> {
  const folder = await mkdtemp(path.join(tmpdir(), 'flotilla-registry-'))
  try {
    const registry = await startRegistryProcess({address, storageDir: path.join(folder, 'storage'), configFile: path.join(folder, 'config.yml')})
    return {
      address,
      async stop() {
        await registry.stop()
        await rm(folder, {recursive: true, force: true})
      },
    }
  } catch (error) {
    await rm(folder, {recursive: true, force: true})
    throw error
  }
}

/**
 * Debian's docker-registry, open (no auth), on an ephemeral loopback port with its own temporary storage, ready
 * once `GET /v2/` answers. Docker treats 127.0.0.0/8 registries as insecure by default, so the engine pushes to it over HTTP.
 */
export async function startRegistry(): Promise<RunningRegistry> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startRegistryAt(`127.0.0.1:${await freeLoopbackPort()}`)
    } catch (error) {
      // Another process may take the free port before the registry binds it; a new port fixes that.
      if (attempt === 3 || !(error instanceof RegistryStartError && error.addressInUse)) throw error
    }
  }
}
