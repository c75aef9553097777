import {readFile} from 'node:fs/promises'

import type Docker from 'dockerode'

/**
 * The id of the container this process runs in, from the files the Docker engine bind-mounts over /etc/hostname,
 * /etc/hosts and /etc/resolv.conf (`<data-root>/containers/<id>/…` in /proc/self/mountinfo); undefined outside one.
 */
export function containerIdOfMountinfo(mountinfo: string): string | undefined {
  return /\/containers\/([a-f\d]{64})\/(?:hostname|hosts|resolv\.conf) \/etc\//.exec(mountinfo)?.[1]
}

/**
 * The image of the agent's own container when it runs in a container of the engine it drives (agent.Dockerfile),
 * so that a host shell can run in a sibling container on that engine's host; undefined when the agent runs on the
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
