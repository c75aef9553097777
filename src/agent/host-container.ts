import {readFile} from 'node:fs/promises'
import {PassThrough, Writable} from 'node:stream'

import type Docker from 'dockerode'

import {ownerLabel} from './docker-executor.js'
import {LABELS} from './reconciler.js'

/** Where a host container has the host's root, which chroot makes its root. */
const HOST_ROOT = '/host'

/** How long a power command may run on the host before it counts as failed. */
const HOST_COMMAND_TIMEOUT_MS = 60_000

/**
 * The id of the container this process runs in, from the files the Docker engine bind-mounts over /etc/hostname,
 * /etc/hosts and /etc/resolv.conf (`<data-root>/containers/<id>/…` in /proc/self/mountinfo); undefined outside one.
 */
export function containerIdOfMountinfo(mountinfo: string): string | undefined {
  return /\/containers\/([a-f\d]{64})\/(?:hostname|hosts|resolv\.conf) \/etc\//.exec(mountinfo)?.[1]
}

/**
 * The image of the agent's own container when it runs in a container of the engine it drives (agent.Dockerfile),
 * so that what must run on the host can run in a sibling container there; undefined when the agent runs on the
 * host, or in a container another engine runs.
 */
export async function ownContainerImage(docker: Docker, mountinfoPath = '/proc/self/mountinfo'): Promise<string | undefined> {
  const id = containerIdOfMountinfo(await readFile(mountinfoPath, 'utf8').catch(() => ''))
  if (!id) return undefined
  try {
    return (await docker.getContainer(id).inspect()).Image
  } catch (error) {
    if ((error as {statusCode?: number}).statusCode === 404) return undefined
    throw error
  }
}

/**
 * A container that runs `command` on the engine's host for an agent in a container: from the agent's own image,
 * in the host's pid, network, ipc and uts namespaces, chrooted into the host's root. It has the engine's default
 * capabilities, not every one: enough for a shell, systemctl and journalctl, not for mounting.
 */
export function hostContainerOptions(image: string, command: string[], deviceUuid: string | undefined): Docker.ContainerCreateOptions {
  return {
    Image: image,
    Entrypoint: ['chroot', HOST_ROOT],
    Cmd: command,
    Env: ['HOME=/root'],
    WorkingDir: '/',
    Labels: {[LABELS.hostContainer]: 'true', ...(deviceUuid ? {[LABELS.deviceUuid]: deviceUuid} : {})},
    HostConfig: {Binds: [`/:${HOST_ROOT}`], NetworkMode: 'host', PidMode: 'host', IpcMode: 'host', UTSMode: 'host'},
  }
}

/** Removes a host container, with the anonymous volume the agent's image (VOLUME /var/lib/flotilla) gave it. */
export async function removeHostContainer(container: Docker.Container): Promise<void> {
  await container.remove({force: true, v: true}).catch(() => {})
}

/** Removes the host containers an earlier agent of this device left behind when it died while one ran. */
export async function removeLeftoverHostContainers(docker: Docker, deviceUuid: string): Promise<void> {
  const leftovers = await docker.listContainers({all: true, filters: {label: [`${LABELS.hostContainer}=true`, ownerLabel(deviceUuid)], status: ['exited']}}).catch(() => [])
  await Promise.all(leftovers.map((leftover) => removeHostContainer(docker.getContainer(leftover.Id))))
}

export interface StartedHostContainer {
  container: Docker.Container
  /** Its attached output (multiplexed without a TTY), and its input when attached with stdin. */
  stream: NodeJS.ReadWriteStream
  /** Its exit status, once it stopped and its output ended. */
  exited: Promise<number>
}

/** Creates a host container, attaches to it and starts it; one that fails on the way is removed again. */
export async function startHostContainer(docker: Docker, options: Docker.ContainerCreateOptions, attach: {stdin?: boolean; hijack?: boolean} = {}): Promise<StartedHostContainer> {
  const container = await docker.createContainer(options)
  try {
    const stream = await container.attach({stream: true, stdout: true, stderr: true, ...attach})
    const outputEnded = new Promise((resolve) => {
      stream.once('end', resolve)
      stream.once('close', resolve)
    })
    await container.start()
    const exited = Promise.all([container.wait({condition: 'not-running'}) as Promise<{StatusCode: number}>, outputEnded]).then(([{StatusCode}]) => StatusCode)
    return {container, stream, exited}
  } catch (error) {
    await removeHostContainer(container)
    throw error
  }
}

/** Runs a command's words on the engine's host in a host container (see {@link hostContainerOptions}); fails on a non-zero exit. */
export async function runInHostContainer(docker: Docker, image: string, words: string[], deviceUuid: string | undefined): Promise<void> {
  const {container, stream, exited} = await startHostContainer(docker, {...hostContainerOptions(image, words, deviceUuid), AttachStdout: true, AttachStderr: true})
  let timer: NodeJS.Timeout | undefined
  try {
    const stderr: Buffer[] = []
    const collectStderr = new Writable({
      write(chunk: Buffer, _encoding, done) {
        stderr.push(chunk)
        done()
      },
    })
    docker.modem.demuxStream(stream, new PassThrough().resume(), collectStderr)
    const timedOut = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${words.join(' ')}: still running after ${HOST_COMMAND_TIMEOUT_MS / 1000} s`)), HOST_COMMAND_TIMEOUT_MS)
    })
    const status = await Promise.race([exited, timedOut])
    if (status !== 0) throw new Error(`${words.join(' ')}: ${Buffer.concat(stderr).toString('utf8').trim() || `exited with ${status}`}`)
  } finally {
    clearTimeout(timer)
    await removeHostContainer(container)
  }
}
