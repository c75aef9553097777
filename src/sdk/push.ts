import {createHash} from 'node:crypto'
import path from 'node:path'

import {ExpectedError, InterruptedError} from '../errors.js'
import type {ProjectEntry} from '../project/pack.js'
import type {BuildEvent} from '../protocol/build-events.js'
import type {FleetClient} from './client.js'
import {BuilderLacksContentsError, storedContents, streamBuild, startDetachedBuild} from './builder.js'
import {resolveDeviceType} from './device-types.js'
import {type Fleet, getFleet} from './fleets.js'
import {cancelRelease, setReleaseNote, tagRelease} from './releases.js'

export interface PushOptions {
  fleet: string
  source: string
  dockerfile?: string
  nocache?: boolean
  draft?: boolean
  releaseTags?: Array<[string, string]>
  note?: string
  signal?: AbortSignal
  /** The pushing shell's environment, for `${VAR}` in docker-compose.yml (it wins over the project's `.env`). */
  environment?: Record<string, string | undefined>
  /** A YAML or JSON file of registry credentials for the builder's pulls (balena-cli's `--registry-secrets`). */
  registrySecrets?: string
  /** A folder where the hashes of the project's files are remembered between pushes, so unchanged files are not read again. */
  hashCacheFolder?: string
}

/** What a push reports while it runs, for the command to render. */
export type PushEvent =
  | {kind: 'project'; fleet: Fleet; services: string[]; warnings: string[]}
  | UploadEvent
  | {kind: 'build'; event: BuildEvent}
  | {kind: 'release'; releaseId: number}

/** The upload so far: `bytes` sent (compressed); `read` of the project's `total` bytes packed, the share done. */
export interface UploadEvent {
  kind: 'upload'
  bytes: number
  elapsedMs: number
  read: number
  total: number
}

export interface PushResult {
  releaseId: number
  failed: boolean
}

/** The project packed for the fleet's builder; contents the builder has are named by hash, except those in `resend`. */
async function prepare(client: FleetClient, options: PushOptions, upload?: UploadProgress, resend: ReadonlySet<string> = new Set()) {
  const fleet = await getFleet(client, options.fleet)
  const deviceType = await resolveDeviceType(client, fleet.device_type)
  const {describeProject} = await import('../project/detect.js')
  const folder = path.resolve(options.source)
  const project = await describeProject(folder, {
    deviceType: deviceType.slug,
    arch: deviceType.arch,
    dockerfile: options.dockerfile,
    environment: options.environment,
    allowPathsOutsideProject: true,
  })
  const {listProjectEntries, packProject} = await import('../project/pack.js')
  const contexts = project.services.flatMap((service) => (service.type === 'build' ? [service.context] : []))
  // The builder reads the compose file as sent: it gets the variables of this shell and the env_files resolved.
  const replacements = project.composeFile && project.resolvedComposeText !== undefined ? {[project.composeFile]: project.resolvedComposeText} : {}
  const extraFiles = await registrySecretsFile(options.registrySecrets)
  const entries = await listProjectEntries(folder, undefined, contexts)
  const hashCache = options.hashCacheFolder && path.join(options.hashCacheFolder, `${createHash('sha256').update(folder).digest('hex').slice(0, 32)}.json`)
  const references = await unchangedContents(client, fleet.slug, entries, replacements, {cacheFile: hashCache, signal: options.signal, resend})
  const tarball = packProject(folder, {
    onProgress: upload && ((progress) => upload.packed(progress.bytesRead, progress.totalBytes)),
    entries,
    references,
    replacements,
    extraFiles,
  })
  return {fleet, folder, project, tarball}
}

/** `--registry-secrets`: the file the builder reads its pull credentials from, in the upload. */
async function registrySecretsFile(file: string | undefined): Promise<Record<string, string>> {
  if (file === undefined) return {}
  const {readRegistrySecretsFile, REGISTRY_SECRETS_PATH} = await import('../project/registry-secrets.js')
  return {[REGISTRY_SECRETS_PATH]: await readRegistrySecretsFile(file)}
}

/** The files whose contents the fleet's builder has from earlier pushes, by entry name with their hash: the upload leaves those out. */
async function unchangedContents(
  client: FleetClient,
  slug: string,
  entries: ProjectEntry[],
  replacements: Record<string, string>,
  options: {cacheFile?: string; signal?: AbortSignal; resend: ReadonlySet<string>},
): Promise<Map<string, string>> {
  const {hashProjectContents} = await import('../project/content-hashes.js')
  const hashes = await hashProjectContents(
    entries.filter((entry) => entry.size > 0 || Object.hasOwn(replacements, entry.name)),
    replacements,
    options.cacheFile,
  )
  const stored = await storedContents(client, slug, [...hashes.values()], options.signal)
  return new Map([...hashes].filter(([, hash]) => stored.has(hash) && !options.resend.has(hash)))
}

/** The upload's progress as got reports it: the latest count not yet handed on, and a wake-up for whoever waits. */
class UploadProgress {
  private readonly started = Date.now()
  private latest: number | undefined
  private wake: (() => void) | undefined
  private read = 0
  private total = 0

  /** How much of the project has been read into the upload, of how much. */
  packed(read: number, total: number): void {
    this.read = read
    this.total = total
  }

  report(bytes: number): void {
    this.latest = bytes
    this.wake?.()
  }

  /** Resolves at the next report. */
  changed(): Promise<void> {
    return new Promise((resolve) => (this.wake = resolve))
  }

  /** The progress not yet handed on, once. */
  take(): UploadEvent | undefined {
    if (this.latest === undefined) return undefined
    const event = {kind: 'upload' as const, bytes: this.latest, elapsedMs: Date.now() - this.started, read: this.read, total: this.total}
    this.latest = undefined
    return event
  }
}

/**
 * The builder's events with the upload's progress between them, as it happens: a builder may say nothing until the
 * whole upload is in, so progress is not held back until its next event.
 */
async function* withUploadProgress(
  events: AsyncGenerator<BuildEvent>,
  upload: UploadProgress,
): AsyncGenerator<UploadEvent | {kind: 'build'; event: BuildEvent}> {
  let next = events.next()
  try {
    while (true) {
      const step = await Promise.race([next, upload.changed().then(() => undefined)])
      const progress = upload.take()
      if (progress) yield progress
      if (step === undefined) continue
      if (step.done) return
      next = events.next()
      yield {kind: 'build', event: step.value}
    }
  } finally {
    // Left early: let the build stream close once its pending read settles.
    events.return(undefined).catch(() => undefined)
  }
}

async function finishRelease(client: FleetClient, releaseId: number, options: PushOptions): Promise<void> {
  if (options.releaseTags?.length) await tagRelease(client, releaseId, options.releaseTags)
  if (options.note) await setReleaseNote(client, releaseId, options.note)
}

/** One upload and build of the prepared project: its release, whether it failed, and the contents the builder lacked when it refused the upload for that. */
interface BuildAttempt {
  releaseId?: number
  failed: boolean
  missing?: string[]
}

/**
 * Streams the prepared project to the builder and yields the build as it happens. With `mayResend`, a refusal for
 * missing contents (`missingContents`) is not shown: the caller sends the project again.
 */
async function* uploadAndBuild(client: FleetClient, options: PushOptions, prepared: Awaited<ReturnType<typeof prepare>>, upload: UploadProgress, mayResend: boolean): AsyncGenerator<PushEvent, BuildAttempt> {
  const attempt: BuildAttempt = {failed: false}
  const stop = new AbortController()
  const abort = () => stop.abort()
  options.signal?.addEventListener('abort', abort, {once: true})
  try {
    const events = streamBuild(client, {
      slug: prepared.fleet.slug,
      tarball: prepared.tarball,
      dockerfilePath: options.dockerfile,
      nocache: options.nocache,
      draft: options.draft,
      signal: stop.signal,
      onUploadProgress: (bytes) => upload.report(bytes),
    })
    for await (const item of withUploadProgress(events, upload)) {
      if (item.kind === 'upload') {
        yield item
        continue
      }

      const {event} = item
      if (event.type === 'metadata' && event.resource === 'buildLogId') {
        attempt.releaseId = event.value
        yield {kind: 'release', releaseId: event.value}
      }

      if (event.type === 'metadata' && event.resource === 'missingContents') attempt.missing = event.value
      if ('isError' in event && event.isError) attempt.failed = true
      if (!(mayResend && attempt.missing)) yield {kind: 'build', event}
    }
  } catch (error) {
    if (options.signal?.aborted) {
      if (attempt.releaseId !== undefined) await cancelRelease(client, attempt.releaseId)
      throw new InterruptedError(attempt.releaseId === undefined ? 'push cancelled before the build started' : `push cancelled: release ${attempt.releaseId} marked cancelled`)
    }

    throw error
  } finally {
    options.signal?.removeEventListener('abort', abort)
  }

  return attempt
}

/**
 * Packs the project, streams it to the fleet's builder and yields the build as it happens. The project is checked
 * before anything is uploaded. When `signal` aborts, the release is marked cancelled and an InterruptedError ends it.
 * [flotilla] When the builder lacks contents the upload named by hash (behind a balancer, another server instance
 * answered the contents query), the project is sent once more with those contents in full.
 */
export async function* pushProject(client: FleetClient, options: PushOptions): AsyncGenerator<PushEvent, PushResult> {
  let upload = new UploadProgress()
  const prepared = await prepare(client, options, upload)
  const {fleet, project} = prepared
  yield {kind: 'project', fleet, services: project.services.map((service) => service.serviceName), warnings: project.warnings}
  let attempt = yield* uploadAndBuild(client, options, prepared, upload, true)
  if (attempt.missing) {
    yield {kind: 'build', event: {message: `[Info] This builder lacks ${attempt.missing.length} file contents sent by earlier pushes (another server instance kept them): sending the project again with them in full`}}
    upload = new UploadProgress()
    attempt = yield* uploadAndBuild(client, options, await prepare(client, options, upload, new Set(attempt.missing)), upload, false)
  }

  if (attempt.releaseId === undefined) throw new ExpectedError('the builder ended without creating a release')
  if (!attempt.failed) await finishRelease(client, attempt.releaseId, options)
  return {releaseId: attempt.releaseId, failed: attempt.failed}
}

/** Uploads the project and returns as soon as the build has started (`--detached`). */
export async function pushDetached(client: FleetClient, options: PushOptions): Promise<{releaseId: number; fleet: Fleet; warnings: string[]}> {
  const start = async (resend?: ReadonlySet<string>) => {
    const {fleet, project, tarball} = await prepare(client, options, undefined, resend)
    const request = {slug: fleet.slug, tarball, dockerfilePath: options.dockerfile, nocache: options.nocache, draft: options.draft, signal: options.signal}
    return {fleet, project, ...(await startDetachedBuild(client, request))}
  }

  let started
  try {
    started = await start()
  } catch (error) {
    // Another server instance answered the contents query: once more, with what this builder lacks in full.
    if (!(error instanceof BuilderLacksContentsError)) throw error
    started = await start(new Set(error.missing))
  }

  await finishRelease(client, started.releaseId, options)
  return {releaseId: started.releaseId, fleet: started.fleet, warnings: started.project.warnings}
}
