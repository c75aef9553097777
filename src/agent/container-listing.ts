import type Docker from 'dockerode'

import {ownerLabel} from './docker-executor.js'
import {LABELS} from './reconciler.js'

/** How balena-cli names the engine's binary in its listing: balenaOS's `balena`, else `docker` (or a bare name). */
const ENGINE = String.raw`(?:"?\$\(if \[ -f /usr/bin/balena \]; then echo "balena"; else echo "docker"; fi\)"?|balena|balena-engine|docker)`
const FORMAT = String.raw`(?:"\{\{\.ID\}\} \{\{\.Names\}\}"|'\{\{\.ID\}\} \{\{\.Names\}\}')`
const LISTING = new RegExp(String.raw`^\s*${ENGINE}\s+ps\s+--format\s+${FORMAT}\s*$`)

/**
 * Whether a host command is balena-cli's listing of the device's containers, which `balena ssh <uuid> <service>`
 * runs through the gateway (`host <uuid> <command>`) to find the container to `enter`:
 * `"$(if [ -f /usr/bin/balena ]; then echo "balena"; else echo "docker"; fi)" ps --format "{{.ID}} {{.Names}}"`.
 * Only that exact command (or the same with a plain engine name) is recognised; anything else runs as it is.
 */
export function isContainerListingCommand(command: string): boolean {
  return LISTING.test(command)
}

/** The running service containers the agent owns for this device: those a session may enter. */
export async function deviceContainers(docker: Docker, deviceUuid: string | undefined): Promise<Docker.ContainerInfo[]> {
  return deviceUuid ? docker.listContainers({filters: {label: [`${LABELS.supervised}=true`, ownerLabel(deviceUuid)]}}) : []
}

/**
 * The answer to that listing, as the engine's `ps` prints it: one container a line, short id and names. The agent
 * gives it from the engine it drives, with {@link deviceContainers} only: the host may have no engine CLI, or one
 * that lists another engine's containers, or other devices' with the same names.
 */
export function formatContainerListing(containers: readonly Pick<Docker.ContainerInfo, 'Id' | 'Names'>[]): string {
  return containers.map((container) => `${container.Id.slice(0, 12)} ${container.Names.map((name) => name.replace(/^\//, '')).join(',')}\n`).join('')
}
