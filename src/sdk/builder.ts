import type {Readable} from 'node:stream'

import {ApiError, ExpectedError} from '../errors.js'
import type {BuildEvent, HeadlessBuildAnswer} from '../protocol/build-events.js'
import {BUILD_CONTENTS_PATH, type ContentsAnswer, type ContentsQuery} from '../protocol/build-upload.js'
import type {FleetClient} from './client.js'
import {isFlotillaUrl} from './endpoints.js'
import {parseJsonArrayStream} from './json-array-stream.js'

export interface BuildRequest {
  /** The fleet's slug, `org/name`. */
  slug: string
  /** The gzip'd tar of the project. */
  tarball: Readable
  dockerfilePath?: string
  nocache?: boolean
  draft?: boolean
  signal?: AbortSignal
  onUploadProgress?: (bytes: number) => void
}

/**
 * Which of these contents (SHA-256, hex) the fleet's builder already has from earlier pushes, so the upload can
 * leave them out (protocol/build-upload.ts). None for a builder that keeps nothing (balena's, an older flotilla).
 */
export async function storedContents(client: FleetClient, slug: string, hashes: string[], signal?: AbortSignal): Promise<Set<string>> {
  const unique = [...new Set(hashes)]
  if (unique.length === 0 || !isFlotillaUrl(client.remote)) return new Set()
  const builder = await client.endpoint('builder')
  const query: ContentsQuery = {sha256: unique}
  let answer: ContentsAnswer
  try {
    answer = await client.request<ContentsAnswer>('POST', `${builder.replace(/\/+$/, '')}${BUILD_CONTENTS_PATH}`, {json: query, searchParams: {slug}, signal})
  } catch (error) {
    if (error instanceof ApiError && error.statusCode === 404) return new Set()
    throw error
  }

  const missing = new Set(answer?.missing ?? unique)
  return new Set(unique.filter((hash) => !missing.has(hash)))
}

async function openBuild(client: FleetClient, request: BuildRequest, headless: boolean): Promise<Readable> {
  const builder = await client.endpoint('builder')
  const searchParams: Record<string, string> = {
    slug: request.slug,
    nocache: String(Boolean(request.nocache)),
    headless: String(headless),
    isdraft: String(Boolean(request.draft)),
    emulated: 'false',
  }
  if (request.dockerfilePath) searchParams.dockerfilePath = request.dockerfilePath
  return client.openStream('POST', `${builder.replace(/\/+$/, '')}/v3/build`, {
    body: request.tarball,
    searchParams,
    headers: {'content-encoding': 'gzip', 'content-type': 'application/x-tar'},
    signal: request.signal,
    onUploadProgress: request.onUploadProgress,
  })
}

/** Uploads the project and yields the builder's events as they arrive. */
export async function* streamBuild(client: FleetClient, request: BuildRequest): AsyncGenerator<BuildEvent> {
  const response = await openBuild(client, request, false)
  try {
    yield* parseJsonArrayStream<BuildEvent>(response)
  } catch (error) {
    if (request.signal?.aborted) throw error
    throw new ExpectedError(`the connection to the builder was lost during the build (${(error as Error).message}) — see "flotilla release list" for how it ended`, {cause: error})
  }
}

/** [flotilla] The builder refused the upload for contents it lacks (another server instance answered the contents query). */
export class BuilderLacksContentsError extends ExpectedError {
  constructor(
    message: string,
    readonly missing: string[],
  ) {
    super(message)
  }
}

/** Uploads the project and returns as soon as the build started (`--detached`). */
export async function startDetachedBuild(client: FleetClient, request: BuildRequest): Promise<{releaseId: number}> {
  const response = await openBuild(client, request, true)
  const chunks: Buffer[] = []
  for await (const chunk of response) chunks.push(chunk as Buffer)
  const answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as HeadlessBuildAnswer
  if (!answer.started && Array.isArray(answer.missing)) throw new BuilderLacksContentsError(`the build did not start: ${answer.message}`, answer.missing)
  if (!answer.started) throw new ExpectedError(`the build did not start: ${answer.message || answer.error}`)
  return {releaseId: answer.releaseId}
}
