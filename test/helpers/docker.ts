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

const platformImagesReady = new Map<string, Promise<void>>()

/**
 * A busybox base image whose config says it is for `platform` (`linux/arm64`), made by
 * scripts/make-platform-base-image.sh from Debian's busybox-static of that architecture, or of `debianArch` to
 * make one that lies about its platform; once per test process. Running a foreign one needs qemu-user-static.
 */
export function ensurePlatformBaseImage(platform: string, debianArch?: string): Promise<string> {
  const image = `flotilla-test/busybox-${platform.replace(/^linux\//, '').replaceAll('/', '-')}${debianArch ? `-from-${debianArch}` : ''}:latest`
  let ready = platformImagesReady.get(image)
  if (!ready) {
    ready = ensureDocker().then(() => runScript('make-platform-base-image.sh', [image, platform, ...(debianArch ? [debianArch] : [])]))
    ready.catch(() => platformImagesReady.delete(image))
    platformImagesReady.set(image, ready)
  }

  return ready.then(() => image)
}

/**
 * Pushes `images` (one per platform) to `<registry>/<name>` and a manifest list of them as `<registry>/<name>:latest`,
 * as a multi-platform image is published, and leaves none of them in the engine: a build must pull the variant it
 * wants. Returns the list's reference.
 */
export async function pushMultiPlatformImage(registry: string, name: string, images: string[]): Promise<string> {
  const list = `${registry}/${name}:latest`
  const variants: string[] = []
  for (const [index, image] of images.entries()) {
    const variant = `${registry}/${name}:variant-${index}`
    await run('docker', ['tag', image, variant])
    await run('docker', ['push', '--quiet', variant])
    variants.push(variant)
  }

  await run('docker', ['manifest', 'create', '--insecure', list, ...variants])
  await run('docker', ['manifest', 'push', '--insecure', '--purge', list])
  await run('docker', ['image', 'rm', ...variants])
  return list
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
