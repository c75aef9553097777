import {BINFMT_MISC, emulationOf, emulatorOf, formatPlatform, type Platform, runsNatively} from '../../protocol/platform.js'

/** What a server needs to build for another CPU, as Debian packages it. */
export const EMULATION_PACKAGES = 'qemu-user-static binfmt-support'

/** The platforms fleets are mostly built for, checked when the server starts. */
const COMMON_PLATFORMS: Platform[] = [
  {os: 'linux', architecture: 'arm64'},
  {os: 'linux', architecture: 'arm', variant: 'v7'},
  {os: 'linux', architecture: 'amd64'},
]

/**
 * How builds for `platform` run on a machine whose CPU is `machine`: natively (undefined), under emulation (an
 * `[Info]` line), or not at all (a `[Warn]` line naming what to install).
 */
export async function emulationNotice(machine: string, platform: Platform): Promise<string | undefined> {
  if (runsNatively(machine, platform.architecture)) return undefined
  const emulator = emulatorOf(platform.architecture) ?? `qemu for ${platform.architecture}`
  const state = await emulationOf(platform.architecture)
  if (state === 'enabled') return `[Info] This server's CPU is ${machine}: RUN steps for ${formatPlatform(platform)} run under emulation (${emulator})`
  const why = state === 'unknown' ? 'binfmt_misc is not mounted' : `${emulator} is ${state} in binfmt_misc`
  return `[Warn] This server's CPU is ${machine} and cannot run ${formatPlatform(platform)} programs (${why}): RUN steps will fail — install ${EMULATION_PACKAGES} on the server (apt-get install ${EMULATION_PACKAGES}, then update-binfmts --enable)`
}

/** The one warning `server start` prints when this machine cannot emulate the common fleet platforms; undefined when it can. */
export async function startupEmulationWarning(machine: string, binfmtMisc = BINFMT_MISC): Promise<string | undefined> {
  const missing: string[] = []
  for (const platform of COMMON_PLATFORMS) {
    if (runsNatively(machine, platform.architecture)) continue
    if ((await emulationOf(platform.architecture, binfmtMisc)) !== 'enabled') missing.push(formatPlatform(platform))
  }

  if (missing.length === 0) return undefined
  return `builds for ${missing.join(', ')} fleets need emulation, which this machine lacks — install ${EMULATION_PACKAGES} (apt-get install ${EMULATION_PACKAGES}, then update-binfmts --enable)`
}
