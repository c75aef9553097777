/**
 * balenaOS version strings as hostApp releases carry them in `raw_version`: semver with balena's habits
 * (`5.1.20+rev1`, `2.115.0`, `6.0.0-1707394841`, a leading `v`). Shared by the server, which publishes them,
 * and the CLI, which orders them and picks "latest".
 */
export interface OsVersion {
  major: number
  minor: number
  patch: number
  /** Pre-release identifiers (`beta`, `1`), empty for a release. */
  prerelease: string[]
  /** Build metadata (`rev1`), empty when none. */
  build: string[]
}

const SEMVER = /^v?(\d+)\.(\d+)\.(\d+)(?:-([\da-z-]+(?:\.[\da-z-]+)*))?(?:\+([\da-z-]+(?:\.[\da-z-]+)*))?$/i

/** The parts of a version, or undefined when the string is not semver. */
export function parseOsVersion(text: string): OsVersion | undefined {
  const match = SEMVER.exec(text.trim())
  if (!match) return undefined
  return {
    major: Number(match[1]),
    minor: Number(match[2]),
    patch: Number(match[3]),
    prerelease: match[4] ? match[4].split('.') : [],
    build: match[5] ? match[5].split('.') : [],
  }
}

/** `5.1.20` of `v5.1.20+rev1`: the version without pre-release or build parts (the release's `semver`). */
export function coreOf(version: OsVersion): string {
  return `${version.major}.${version.minor}.${version.patch}`
}

/** The balena revision of `+revN`, or undefined. */
export function revisionOf(version: OsVersion): number | undefined {
  for (const part of version.build) {
    const match = /^rev(\d+)$/i.exec(part)
    if (match) return Number(match[1])
  }

  return undefined
}

function compareIdentifiers(a: string, b: string): number {
  const aNumeric = /^\d+$/.test(a)
  const bNumeric = /^\d+$/.test(b)
  if (aNumeric && bNumeric) return Math.sign(Number(a) - Number(b))
  if (aNumeric) return -1
  if (bNumeric) return 1
  return a < b ? -1 : a > b ? 1 : 0
}

function compareLists(a: string[], b: string[]): number {
  for (let index = 0; index < Math.min(a.length, b.length); index++) {
    const order = compareIdentifiers(a[index], b[index])
    if (order !== 0) return order
  }

  return Math.sign(a.length - b.length)
}

/**
 * Orders two version strings oldest first, as balena-semver does: semver precedence, then (unlike plain semver)
 * the build part, so `+rev2` follows `+rev1` and any revision follows none. Strings that are not semver come
 * before every semver one, among themselves in text order.
 */
export function compareOsVersions(a: string, b: string): number {
  const left = parseOsVersion(a)
  const right = parseOsVersion(b)
  if (!left || !right) {
    if (left) return 1
    if (right) return -1
    return a < b ? -1 : a > b ? 1 : 0
  }

  for (const key of ['major', 'minor', 'patch'] as const) {
    if (left[key] !== right[key]) return Math.sign(left[key] - right[key])
  }

  if (left.prerelease.length === 0 || right.prerelease.length === 0) {
    const order = Math.sign(right.prerelease.length - left.prerelease.length) // a release follows its pre-releases
    if (order !== 0) return order
  } else {
    const order = compareLists(left.prerelease, right.prerelease)
    if (order !== 0) return order
  }

  const leftRevision = revisionOf(left)
  const rightRevision = revisionOf(right)
  if (leftRevision !== rightRevision) return Math.sign((leftRevision ?? -1) - (rightRevision ?? -1))
  return compareLists(left.build, right.build)
}

/** Newest first. */
export function sortOsVersionsNewestFirst<T>(items: T[], versionOf: (item: T) => string): T[] {
  return [...items].sort((a, b) => compareOsVersions(versionOf(b), versionOf(a)))
}

/** What `latest` means among versions sorted newest first: the newest that is not a pre-release, else the newest. */
export function latestOf<T>(newestFirst: T[], versionOf: (item: T) => string): T | undefined {
  return newestFirst.find((item) => (parseOsVersion(versionOf(item))?.prerelease.length ?? 1) === 0) ?? newestFirst[0]
}

/** The newest balenaOS version balena's API refuses a config.json for (`balenaOS versions <= 1.2.0 are no longer supported`). */
export const NEWEST_UNSUPPORTED_OS_VERSION = '1.2.0'

/** Whether a device config may be made for this OS version: semver, and newer than balena's cut-off. */
export function isConfigurableOsVersion(text: string): boolean {
  return parseOsVersion(text) !== undefined && compareOsVersions(text, NEWEST_UNSUPPORTED_OS_VERSION) > 0
}
