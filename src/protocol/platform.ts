import {readFile} from 'node:fs/promises'
import path from 'node:path'

/**
 * CPU architectures as the fleet API names them (a device type's `cpu_architecture` slug) and as container
 * engines name them (an OCI platform, `linux/arm64`), and which emulator (Debian's qemu-user-static, registered
 * with binfmt_misc) runs one on a machine of another.
 */

export interface Platform {
  os: string
  /** OCI/Go spelling: `amd64`, `arm64`, `arm`, `386`. */
  architecture: string
  /** `v6`, `v7` for `arm`; absent otherwise. */
  variant?: string
}

/** balena's CPU architecture slugs, with the aliases older device types use. */
const PLATFORM_OF_ARCH: Record<string, Platform> = {
  aarch64: {os: 'linux', architecture: 'arm64'},
  armv7hf: {os: 'linux', architecture: 'arm', variant: 'v7'},
  armv6hf: {os: 'linux', architecture: 'arm', variant: 'v6'},
  armv6: {os: 'linux', architecture: 'arm', variant: 'v6'},
  rpi: {os: 'linux', architecture: 'arm', variant: 'v6'},
  i386: {os: 'linux', architecture: '386'},
  'i386-nlp': {os: 'linux', architecture: '386'},
  amd64: {os: 'linux', architecture: 'amd64'},
}

/** The binfmt_misc entry Debian's qemu-user-static registers for each architecture. */
const EMULATOR_OF_ARCHITECTURE: Record<string, string> = {arm64: 'qemu-aarch64', arm: 'qemu-arm', '386': 'qemu-i386', amd64: 'qemu-x86_64'}

/** What each CPU an engine reports (`docker info` Architecture, `uname -m`) runs without emulation. */
const NATIVE_ARCHITECTURES: Record<string, string[]> = {
  x86_64: ['amd64', '386'],
  amd64: ['amd64', '386'],
  x64: ['amd64', '386'],
  ia32: ['386'],
  aarch64: ['arm64', 'arm'],
  arm64: ['arm64', 'arm'],
  armv7l: ['arm'],
  armv6l: ['arm'],
  i686: ['386'],
  i386: ['386'],
}

/** The platform a fleet's images are built for, from its device type's CPU architecture; undefined for one flotilla does not know. */
export function platformOfArch(arch: string): Platform | undefined {
  return PLATFORM_OF_ARCH[arch]
}

/** `linux/arm/v7`, as `docker build --platform` takes it. */
export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/')
}

/** An image's platform from `docker image inspect` (`Os`, `Architecture`, `Variant`). */
export function platformOfImage(inspect: {Os?: string; Architecture?: string; Variant?: string}): Platform {
  return {os: inspect.Os || 'linux', architecture: inspect.Architecture || 'unknown', ...(inspect.Variant ? {variant: inspect.Variant} : {})}
}

/**
 * Whether an image of platform `image` is what was asked for: same OS and architecture, and the same variant
 * when both name one (an engine may leave the variant out, which then means any).
 */
export function platformMatches(image: Platform, wanted: Platform): boolean {
  if (image.os !== wanted.os || image.architecture !== wanted.architecture) return false
  return !image.variant || !wanted.variant || image.variant === wanted.variant
}

/** Whether a machine whose CPU is `machine` runs code of `architecture` natively. */
export function runsNatively(machine: string, architecture: string): boolean {
  return (NATIVE_ARCHITECTURES[machine] ?? [machine]).includes(architecture)
}

/** The binfmt_misc entry that would emulate `architecture` (`qemu-aarch64`), or undefined when qemu-user-static has none. */
export function emulatorOf(architecture: string): string | undefined {
  return EMULATOR_OF_ARCHITECTURE[architecture]
}

/** Where the kernel lists the interpreters of binfmt_misc. */
export const BINFMT_MISC = '/proc/sys/fs/binfmt_misc'

/**
 * Whether this kernel runs programs of `architecture` through an emulator: `enabled`, `disabled` (registered but
 * switched off), `missing` (not registered), or `unknown` when binfmt_misc is not mounted here (in a container,
 * say), so nothing can be told.
 */
export async function emulationOf(architecture: string, binfmtMisc = BINFMT_MISC): Promise<'enabled' | 'disabled' | 'missing' | 'unknown'> {
  const status = await readFile(path.join(binfmtMisc, 'status'), 'utf8').catch(() => undefined)
  if (status === undefined) return 'unknown'
  const emulator = emulatorOf(architecture)
  if (!emulator) return 'missing'
  if (status.trim() !== 'enabled') return 'disabled'
  const entry = await readFile(path.join(binfmtMisc, emulator), 'utf8').catch(() => undefined)
  if (entry === undefined) return 'missing'
  return entry.split('\n')[0] === 'enabled' ? 'enabled' : 'disabled'
}
