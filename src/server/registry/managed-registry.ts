import {access, mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'

import {ExpectedError} from '../../errors.js'
import {freeLoopbackPort} from '../../listen.js'
import {REGISTRY_BINARY, type RegistryProcess, RegistryStartError, startRegistryProcess} from './registry-process.js'

/** The issuer registries are told to expect in this server's tokens. */
export const TOKEN_ISSUER = 'flotilla'

const REGISTRY_DIR = 'registry'
const STALE_STOP_DEADLINE_MS = 5000

export interface ManagedRegistryOptions {
  dataDir: string
  /** The server's token endpoint as clients reach it. */
  realm: string
  /** The certificate of the server's token key. */
  certificateFile: string
  onUnexpectedExit?: (reason: string) => void
}

/** Whether Debian's registry is installed, so `server start` can run one. */
export async function registryInstalled(): Promise<boolean> {
  return access(REGISTRY_BINARY).then(
    () => true,
    () => false,
  )
}

async function readText(file: string): Promise<string | undefined> {
  return readFile(file, 'utf8').then(
    (text) => text.trim(),
    () => undefined,
  )
}

const processAlive = (pid: number) =>
  access(`/proc/${pid}`).then(
    () => true,
    () => false,
  )

/**
 * Stops a registry an earlier start of this server left running (the server was killed before it could stop it),
 * so its port and storage are free again. Only a process that is our registry with our configuration is touched.
 */
async function stopStaleRegistry(pidFile: string, configFile: string): Promise<void> {
  const pid = Number(await readText(pidFile))
  if (!Number.isInteger(pid) || pid <= 1) return
  const commandLine = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0')
  if (commandLine[0] !== REGISTRY_BINARY || !commandLine.includes(configFile)) return
  process.kill(pid, 'SIGTERM')
  const deadline = Date.now() + STALE_STOP_DEADLINE_MS
  while (await processAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGKILL')
      break
    }

    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Runs Debian's docker-registry for this server: token auth against the server's key, storage under
 * `<data dir>/registry`, on a loopback port chosen on the first start and kept (image names carry it, so
 * devices keep pulling the releases they were given across restarts).
 */
export async function startManagedRegistry(options: ManagedRegistryOptions): Promise<RegistryProcess> {
  const folder = path.join(options.dataDir, REGISTRY_DIR)
  await mkdir(folder, {recursive: true, mode: 0o700})
  const configFile = path.join(folder, 'config.yml')
  const addressFile = path.join(folder, 'address')
  const pidFile = path.join(folder, 'pid')
  await stopStaleRegistry(pidFile, configFile)
  const kept = await readText(addressFile)
  for (let attempt = 1; ; attempt++) {
    const address = kept ?? `127.0.0.1:${await freeLoopbackPort()}`
    try {
      const registry = await startRegistryProcess({
        address,
        storageDir: path.join(folder, 'storage'),
        configFile,
        auth: {realm: options.realm, service: address, issuer: TOKEN_ISSUER, rootCertBundle: options.certificateFile},
        onUnexpectedExit: options.onUnexpectedExit,
      })
      await writeFile(addressFile, address + '\n', {mode: 0o600})
      await writeFile(pidFile, `${registry.pid}\n`, {mode: 0o600})
      return {
        ...registry,
        async stop() {
          await registry.stop()
          await rm(pidFile, {force: true})
        },
      }
    } catch (error) {
      if (!(error instanceof RegistryStartError)) throw error
      if (error.addressInUse && kept) {
        throw new ExpectedError(`the registry's address ${address} (kept in ${addressFile}, as image names carry it) is taken by another program — stop it, or start with --no-registry`)
      }

      // Another process may take the free port before the registry binds it; a new port fixes that.
      if (!error.addressInUse || attempt === 3) throw new ExpectedError(`the Docker registry could not start: ${error.message}`)
    }
  }
}
