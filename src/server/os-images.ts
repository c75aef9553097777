import {createHash, randomBytes} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {readdir, stat} from 'node:fs/promises'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {createGunzip, createGzip} from 'node:zlib'

import {coreOf, latestOf, parseOsVersion, revisionOf, sortOsVersionsNewestFirst} from '../protocol/os-version.js'
import type {Db} from './db/database.js'
import {now} from './db/values.js'
import {ReleaseLifecycle} from './releases/lifecycle.js'

/**
 * The OS images of `server start --images-dir`: `<dir>/<device-type>/<version>/` holding one image (`.img`,
 * `.img.gz`, `.zip`, `.img.xz`, `.img.bz2`) and optionally its `.bmap`. Each device type is published as a
 * public hostApp fleet of the `balena_os` organization and each version as a final, successful release of it
 * (`raw_version` = the folder name), which is what balena clients ask for; `/download` serves the files.
 */

export type ImageFileType = '.img' | '.gz' | '.zip' | '.xz' | '.bz2'

export interface ImageFile {
  path: string
  fileType: ImageFileType
  size: number
  mtimeMs: number
}

export interface OsImageVersion {
  deviceType: string
  version: string
  /** The stored forms of the image, raw first. */
  files: ImageFile[]
  bmap?: string
}

/** The organization hostApp fleets belong to, named as balenaCloud names it. */
export const OS_ORGANIZATION_HANDLE = 'balena_os'
const VERSION_NAME = /^[\w.+-]+$/
const HASH_CHUNK = 4 * 1024 * 1024

function fileTypeOf(name: string): ImageFileType | undefined {
  const lower = name.toLowerCase()
  if (lower.endsWith('.img') || lower.endsWith('.raw')) return '.img'
  if (lower.endsWith('.img.gz') || lower.endsWith('.raw.gz')) return '.gz'
  if (lower.endsWith('.zip')) return '.zip'
  if (lower.endsWith('.img.xz')) return '.xz'
  if (lower.endsWith('.img.bz2')) return '.bz2'
  return undefined
}

async function subdirectories(dir: string): Promise<string[]> {
  const entries = await readdir(dir, {withFileTypes: true})
  const names: string[] = []
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue
    if (entry.isDirectory() || (entry.isSymbolicLink() && (await stat(path.join(dir, entry.name)).catch(() => undefined))?.isDirectory())) names.push(entry.name)
  }

  return names.sort()
}

/** What the images folder holds now; folders without an image are left out. */
export async function scanImagesDir(dir: string): Promise<OsImageVersion[]> {
  const found: OsImageVersion[] = []
  for (const deviceType of await subdirectories(dir)) {
    for (const version of await subdirectories(path.join(dir, deviceType))) {
      if (!VERSION_NAME.test(version)) continue
      const folder = path.join(dir, deviceType, version)
      const files: ImageFile[] = []
      let bmap: string | undefined
      for (const name of (await readdir(folder)).sort()) {
        if (name.startsWith('.')) continue
        const file = path.join(folder, name)
        if (name.toLowerCase().endsWith('.bmap')) {
          bmap = file
          continue
        }

        const fileType = fileTypeOf(name)
        if (!fileType || files.some((known) => known.fileType === fileType)) continue
        const info = await stat(file).catch(() => undefined)
        if (info?.isFile()) files.push({path: file, fileType, size: info.size, mtimeMs: info.mtimeMs})
      }

      if (files.length === 0) continue
      files.sort((a, b) => Number(b.fileType === '.img') - Number(a.fileType === '.img'))
      found.push({deviceType, version, files, bmap})
    }
  }

  return found
}

/** A stored form served as another: a raw image gzip'd, or a gzip'd one unpacked, on the fly. */
export type ImageConversion = 'gzip' | 'gunzip'

/**
 * The bytes of `file` converted, always made the same way (one chunk size, one zlib level), so that the length
 * and digest measured once hold for every later answer.
 */
export function convertedImageStream(file: string, conversion: ImageConversion): Readable {
  const source = createReadStream(file, {highWaterMark: HASH_CHUNK})
  const converted = conversion === 'gzip' ? createGzip({level: 6}) : createGunzip()
  source.once('error', (error) => converted.destroy(error))
  return source.pipe(converted)
}

/** The length and sha-256 (base64) of a converted form, measured by making it once. */
async function measureConversion(file: string, conversion: ImageConversion): Promise<{size: number; digest: string}> {
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of convertedImageStream(file, conversion)) {
    hash.update(chunk as Buffer)
    size += (chunk as Buffer).length
  }

  return {size, digest: hash.digest('base64')}
}

/** The sha-256 (base64) of a whole file, read in large chunks. */
export async function sha256OfFile(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file, {highWaterMark: HASH_CHUNK})) hash.update(chunk as Buffer)
  return hash.digest('base64')
}

/** A release commit that stays the same for the same device type and version across rescans and restarts. */
function commitFor(deviceType: string, version: string): string {
  return createHash('sha256').update(`flotilla-os-image\0${deviceType}\0${version}`).digest('hex').slice(0, 32)
}

/** The organization of hostApp fleets, created on first use; undefined when a user's organization took its handle. */
async function osOrganization(db: Db): Promise<number | undefined> {
  const existing = await db.selectFrom('organization').select('id').where('handle', '=', OS_ORGANIZATION_HANDLE).executeTakeFirst()
  if (existing) {
    const member = await db.selectFrom('organization_membership').select('id').where('is_member_of__organization', '=', existing.id).executeTakeFirst()
    return member ? undefined : existing.id
  }

  const created = await db.insertInto('organization').values({created_at: now(), name: 'balenaOS', handle: OS_ORGANIZATION_HANDLE}).returning('id').executeTakeFirstOrThrow()
  return created.id
}

async function hostAppFor(db: Db, organization: number, deviceType: {id: number; slug: string}): Promise<number> {
  const existing = await db.selectFrom('application').select('id').where('organization', '=', organization).where('app_name', '=', deviceType.slug).executeTakeFirst()
  if (existing) return existing.id
  const actor = await db.insertInto('actor').values({kind: 'application'}).returning('id').executeTakeFirstOrThrow()
  const created = await db
    .insertInto('application')
    .values({
      created_at: now(),
      app_name: deviceType.slug,
      slug: `${OS_ORGANIZATION_HANDLE}/${deviceType.slug}`.toLowerCase(),
      uuid: randomBytes(16).toString('hex'),
      is_for__device_type: deviceType.id,
      organization,
      is_of__class: 'fleet',
      should_track_latest_release: 0,
      should_be_running__release: null,
      is_host: 1,
      is_archived: 0,
      is_public: 1,
      actor: actor.id,
    })
    .returning('id')
    .executeTakeFirstOrThrow()
  return created.id
}

/**
 * Makes the database's hostApp fleets and releases match the images found: new versions become final successful
 * releases, versions gone from the folder are invalidated (and come back valid if they return). Device type
 * folders the server does not know are reported through `warn` and skipped.
 */
export async function publishOsImages(db: Db, versions: OsImageVersion[], warn: (message: string) => void): Promise<Set<string>> {
  const published = new Set<string>()
  await db.transaction().execute(async (trx) => {
    const organization = await osOrganization(trx)
    if (organization === undefined) {
      warn(`OS images not published: the organization "${OS_ORGANIZATION_HANDLE}" belongs to users`)
      return
    }

    const wanted = new Map<number, Map<string, string>>() // hostApp id → commit → version
    const byType = new Map<string, OsImageVersion[]>()
    for (const version of versions) byType.set(version.deviceType, [...(byType.get(version.deviceType) ?? []), version])
    for (const [slug, typeVersions] of byType) {
      const deviceType = await trx.selectFrom('device_type').select(['id', 'slug']).where('slug', '=', slug).executeTakeFirst()
      if (!deviceType) {
        warn(`images dir: "${slug}" is not a known device type — its images are not published`)
        continue
      }

      const hostApp = await hostAppFor(trx, organization, deviceType)
      published.add(slug)
      wanted.set(hostApp, new Map(typeVersions.map((version) => [commitFor(slug, version.version), version.version])))
    }

    // hostApp fleets track no release, so no target changes here for anyone to hear of.
    const releases = new ReleaseLifecycle(trx)
    const hostApps = await trx.selectFrom('application').select('id').where('organization', '=', organization).where('is_host', '=', 1).execute()
    for (const {id} of hostApps) {
      const commits = wanted.get(id) ?? new Map<string, string>()
      const recorded = await trx.selectFrom('release').select(['id', 'commit', 'is_invalidated']).where('belongs_to__application', '=', id).execute()
      const known = new Set(recorded.map((release) => release.commit))
      for (const release of recorded) {
        const shouldBeInvalid = !commits.has(release.commit)
        if (Boolean(release.is_invalidated) !== shouldBeInvalid) await releases.setInvalidated(release.id, shouldBeInvalid)
      }

      // Oldest first, so release ids grow with the versions.
      for (const [commit, version] of sortOsVersionsNewestFirst([...commits], ([, raw]) => raw).reverse()) {
        if (known.has(commit)) continue
        const parsed = parseOsVersion(version)
        await releases.recordFinished({fleetId: id, commit, rawVersion: version, semver: parsed ? coreOf(parsed) : '0.0.0', revision: parsed ? (revisionOf(parsed) ?? null) : null})
      }
    }
  })
  return published
}

/** The images of one folder, rescanned on demand, with their checksums computed once per file version. */
export class OsImageCatalogue {
  private versions: OsImageVersion[] = []
  private signature = ''
  private publishedTypes = new Set<string>()
  private scanning?: Promise<void>
  private lastScan = 0
  private timer?: NodeJS.Timeout
  private readonly digests = new Map<string, {size: number; mtimeMs: number; digest: Promise<string>}>()
  private readonly conversions = new Map<string, {size: number; mtimeMs: number; measured: Promise<{size: number; digest: string}>}>()

  constructor(
    readonly dir: string,
    private readonly db: Db,
    private readonly warn: (message: string) => void,
    /** A lookup reuses the last scan for this long. */
    private readonly freshForMs = 2000,
  ) {}

  /** Scans the folder and publishes what changed; concurrent callers share one scan. */
  async refresh(): Promise<void> {
    this.scanning ??= (async () => {
      try {
        const versions = await scanImagesDir(this.dir)
        const signature = JSON.stringify(versions.map(({deviceType, version}) => [deviceType, version]))
        if (signature !== this.signature) {
          this.publishedTypes = await publishOsImages(this.db, versions, this.warn)
          this.signature = signature
        }

        // Only what is published is served: an unknown device type's folder is left alone.
        this.versions = versions.filter((version) => this.publishedTypes.has(version.deviceType))
        this.lastScan = Date.now()
        // Checksums are worked out in the background, so the first download does not wait for a whole read.
        for (const version of this.versions) for (const file of version.files) this.digestOf(file).catch(() => undefined)
      } finally {
        this.scanning = undefined
      }
    })()
    return this.scanning
  }

  /** Rescans every `intervalMs` until `unwatch`. */
  watch(intervalMs: number, onError: (error: unknown) => void): void {
    this.unwatch()
    this.timer = setInterval(() => this.refresh().catch(onError), intervalMs)
    this.timer.unref()
  }

  unwatch(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  /** The versions of a device type, newest first (rescanning when the last scan is old). */
  async versionsOf(deviceType: string): Promise<OsImageVersion[]> {
    if (Date.now() - this.lastScan > this.freshForMs) await this.refresh()
    return sortOsVersionsNewestFirst(
      this.versions.filter((version) => version.deviceType === deviceType),
      (version) => version.version,
    )
  }

  /** A version by its raw_version, or the newest one for `latest`; undefined when there is none. */
  async find(deviceType: string, version: string): Promise<OsImageVersion | undefined> {
    const versions = await this.versionsOf(deviceType)
    if (['latest', 'recommended', 'default'].includes(version)) return latestOf(versions, (candidate) => candidate.version)
    const wanted = version.replace(/^v(?=\d)/, '')
    return versions.find((candidate) => candidate.version === wanted || candidate.version === version)
  }

  /**
   * The length and sha-256 of a file served converted, so that a client sees its progress and checks what it got
   * as for a stored form: measured on first use, then cached by path, conversion, size and modification time.
   */
  conversionOf(file: Pick<ImageFile, 'path' | 'size' | 'mtimeMs'>, conversion: ImageConversion): Promise<{size: number; digest: string}> {
    const key = `${conversion}:${file.path}`
    const cached = this.conversions.get(key)
    if (cached && cached.size === file.size && cached.mtimeMs === file.mtimeMs) return cached.measured
    const entry = {size: file.size, mtimeMs: file.mtimeMs, measured: measureConversion(file.path, conversion)}
    this.conversions.set(key, entry)
    entry.measured.catch(() => {
      if (this.conversions.get(key) === entry) this.conversions.delete(key)
    })
    return entry.measured
  }

  /** The sha-256 of the file (an image or a bmap) as it is now: cached by path, size and modification time. */
  digestOf(file: Pick<ImageFile, 'path' | 'size' | 'mtimeMs'>): Promise<string> {
    const cached = this.digests.get(file.path)
    if (cached && cached.size === file.size && cached.mtimeMs === file.mtimeMs) return cached.digest
    const digest = sha256OfFile(file.path)
    const entry = {size: file.size, mtimeMs: file.mtimeMs, digest}
    this.digests.set(file.path, entry)
    digest.catch(() => {
      if (this.digests.get(file.path) === entry) this.digests.delete(file.path)
    })
    return digest
  }
}
