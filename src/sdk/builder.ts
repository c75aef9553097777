import type {Readable} from 'node:stream'

import {ExpectedError} from '../errors.js'
import type {BuildEvent, HeadlessBuildAnswer} from '../protocol/build-events.js'
import type {FleetClient} from './client.js'
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

/** Uploads the project and returns as soon as the build started (`--detached`). */
export async function startDetachedBuild(client: FleetClient, request: BuildRequest): Promise<{releaseId: number}> {
  const response = await openBuild(client, request, true)
  const chunks: Buffer[] = []
  for await (const chunk of response) chunks.push(chunk as Buffer)
  const answer = JSON.parse(Buffer.concat(chunks).toString('utf8')) as HeadlessBuildAnswer
  if (!answer.started) throw new ExpectedError(`the build did not start: ${answer.message || answer.error}`)
  return {releaseId: answer.releaseId}
}
