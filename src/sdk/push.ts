import path from 'node:path'

import {ExpectedError, InterruptedError} from '../errors.js'
import type {BuildEvent} from '../protocol/build-events.js'
import type {FleetClient} from './client.js'
import {streamBuild, startDetachedBuild} from './builder.js'
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
}

/** What a push reports while it runs, for the command to render. */
export type PushEvent =
  | {kind: 'project'; fleet: Fleet; services: string[]}
  | {kind: 'upload'; bytes: number}
  | {kind: 'build'; event: BuildEvent}
  | {kind: 'release'; releaseId: number}

export interface PushResult {
  releaseId: number
  failed: boolean
}

async function prepare(client: FleetClient, options: PushOptions) {
  const fleet = await getFleet(client, options.fleet)
  const deviceType = await resolveDeviceType(client, fleet.device_type)
  const {describeProject} = await import('../project/detect.js')
  const folder = path.resolve(options.source)
  const project = await describeProject(folder, {deviceType: deviceType.slug, arch: deviceType.arch, dockerfile: options.dockerfile})
  const {packProject} = await import('../project/pack.js')
  return {fleet, folder, project, tarball: packProject(folder)}
}

async function finishRelease(client: FleetClient, releaseId: number, options: PushOptions): Promise<void> {
  if (options.releaseTags?.length) await tagRelease(client, releaseId, options.releaseTags)
  if (options.note) await setReleaseNote(client, releaseId, options.note)
}

/**
 * Packs the project, streams it to the fleet's builder and yields the build as it happens. The project is checked
 * before anything is uploaded. When `signal` aborts, the release is marked cancelled and an InterruptedError ends it.
 */
export async function* pushProject(client: FleetClient, options: PushOptions): AsyncGenerator<PushEvent, PushResult> {
  const {fleet, project, tarball} = await prepare(client, options)
  yield {kind: 'project', fleet, services: project.services.map((service) => service.serviceName)}
  const uploaded: number[] = []
  let releaseId: number | undefined
  let failed = false
  const upload = new AbortController()
  const abort = () => upload.abort()
  options.signal?.addEventListener('abort', abort, {once: true})
  try {
    const events = streamBuild(client, {
      slug: fleet.slug,
      tarball,
      dockerfilePath: options.dockerfile,
      nocache: options.nocache,
      draft: options.draft,
      signal: upload.signal,
      onUploadProgress: (bytes) => uploaded.push(bytes),
    })
    for await (const event of events) {
      while (uploaded.length > 0) yield {kind: 'upload', bytes: uploaded.splice(0).at(-1) ?? 0}
      if (event.type === 'metadata' && event.resource === 'buildLogId') {
        releaseId = event.value
        yield {kind: 'release', releaseId}
      }

      if ('isError' in event && event.isError) failed = true
      yield {kind: 'build', event}
    }
  } catch (error) {
    if (options.signal?.aborted) {
      if (releaseId !== undefined) await cancelRelease(client, releaseId)
      throw new InterruptedError(releaseId === undefined ? 'push cancelled before the build started' : `push cancelled: release ${releaseId} marked cancelled`)
    }

    throw error
  } finally {
    options.signal?.removeEventListener('abort', abort)
  }

  if (releaseId === undefined) throw new ExpectedError('the builder ended without creating a release')
  if (!failed) await finishRelease(client, releaseId, options)
  return {releaseId, failed}
}

/** Uploads the project and returns as soon as the build has started (`--detached`). */
export async function pushDetached(client: FleetClient, options: PushOptions): Promise<{releaseId: number; fleet: Fleet}> {
  const {fleet, tarball} = await prepare(client, options)
  const {releaseId} = await startDetachedBuild(client, {
    slug: fleet.slug,
    tarball,
    dockerfilePath: options.dockerfile,
    nocache: options.nocache,
    draft: options.draft,
    signal: options.signal,
  })
  await finishRelease(client, releaseId, options)
  return {releaseId, fleet}
}
