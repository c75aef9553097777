import {createHash, randomBytes} from 'node:crypto'
import path from 'node:path'

import type Docker from 'dockerode'

import {ExpectedError} from '../../errors.js'
import type {BuildEvent} from '../../protocol/build-events.js'
import {type BuildService, describeProject, type ImageService, type ProjectService} from '../../project/detect.js'
import {type ProjectIgnore, readContextIgnore} from '../../project/ignore.js'
import {resolveDockerfileTemplate} from '../../project/template.js'
import {formatPlatform, type Platform, platformMatches, platformOfArch} from '../../protocol/platform.js'
import {BuildFailedError, type BuildLine, type BuildNetwork, buildServiceImage, type BuiltImage, inspectLocalImage, pullImage, pushImage, type RegistryCredentials, tagImage} from './docker-builder.js'
import {emulationNotice} from './emulation.js'
import {buildRegistryConfig, mirroredReference, pullCredentials, readRegistrySecrets, REGISTRY_SECRETS_PATH, type RegistrySecrets} from './image-sources.js'
import type {UploadedProject} from './upload.js'

/** What the build needs of the database; the route supplies it, so this module stays free of SQL. */
export interface BuildStore {
  /** The service row of the fleet named so, created when missing. */
  ensureService(serviceName: string): Promise<number>
  /** A new image row for a service of this release; returns its id and the repository it is stored under. */
  createImage(serviceId: number, details: {dockerfile: string | null; projectType: string}): Promise<{imageId: number; location: string}>
  updateImage(imageId: number, patch: Record<string, unknown>): Promise<void>
  /** The fleet's latest successful image of this service built from a context of this digest, with its release. */
  findReusableImage(serviceName: string, contextDigest: string): Promise<{imageId: number; location: string; contentHash: string | null; releaseId: number} | undefined>
  /** Makes an existing image part of this release too. */
  reuseImage(imageId: number): Promise<void>
  /** Whether someone cancelled the release meanwhile (balena clients PATCH its status). */
  isCancelled(): Promise<boolean>
}

export interface ReleaseBuildRequest {
  docker: Docker
  project: UploadedProject
  deviceType: string
  arch: string
  dockerfilePath?: string
  nocache: boolean
  /** `host:port` of the registry images are pushed to; null keeps them in the local engine. */
  registry: string | null
  /** `host:port` of a Docker Hub mirror that image-only services are pulled from when the engine lacks them. */
  registryMirror?: string | null
  /** What the engine pushes to the registry with: this build's credential (good for this release's images only). */
  registryCredentials?: RegistryCredentials
  store: BuildStore
  /** The network RUN steps get: none, the engine's default bridge, or the host's (which reaches the server's loopback). */
  network: BuildNetwork
  /** How long the whole build may take before it fails. */
  timeoutMs: number
  signal: AbortSignal
  emit: (event: BuildEvent) => void
}

export interface ReleaseBuildResult {
  status: 'success' | 'failed' | 'cancelled'
  composition: unknown
  buildLog: string
  error?: string
}

/** Where a resolved template is added to the context, so the engine builds the resolved text. */
const RESOLVED_DOCKERFILE = '.flotilla.Dockerfile'

interface ServiceDockerfile {
  /** Inside the context. */
  path: string
  text: string
  /** Files the context gets beside the upload's. */
  extraFiles: Record<string, string>
}

async function dockerfileFor(project: UploadedProject, service: BuildService, deviceType: string, arch: string): Promise<ServiceDockerfile> {
  const text = await project.readText(path.posix.join(service.context, service.dockerfilePath))
  if (text === undefined) throw new ExpectedError(`the Dockerfile of service ${service.serviceName} (${service.dockerfilePath}) is not a file in its build context`)
  if (service.dockerfileKind !== 'template') return {path: service.dockerfilePath, text, extraFiles: {}}
  const resolved = resolveDockerfileTemplate(text, {deviceType, arch})
  return {path: RESOLVED_DOCKERFILE, text: resolved, extraFiles: {[RESOLVED_DOCKERFILE]: resolved}}
}

/** What every service's job of one release shares. */
interface ReleaseJob {
  request: ReleaseBuildRequest
  platform: Platform
  secrets: RegistrySecrets
  signal: AbortSignal
  /** Why the build stopped when it ran out of time. */
  timeout: {signal: AbortSignal; message: string}
  say: (message: string, extra?: {isError?: boolean; isSuccess?: boolean; replace?: boolean}) => void
}

/** An image made for a service, ready under its tag in the engine. */
type MadeImage = BuiltImage

/** Refuses an image made for another platform than the fleet's, saying where it came from and what to do. */
function checkPlatform(job: ReleaseJob, image: MadeImage, origin: string): void {
  if (platformMatches(image.platform, job.platform)) return
  const wanted = formatPlatform(job.platform)
  throw new BuildFailedError(
    `the image is for ${formatPlatform(image.platform)}, not ${wanted} as ${job.request.deviceType} devices need: ${origin} — use an image that has a ${wanted} variant (on the server: docker pull --platform ${wanted} <image>)`,
  )
}

async function buildImageOf(job: ReleaseJob, service: BuildService, dockerfile: ServiceDockerfile, tag: string, onLine: (line: BuildLine) => void): Promise<MadeImage> {
  const {request} = job
  const ignore = await readContextIgnore(request.project, service.context)
  const built = await buildServiceImage(request.docker, {
    serviceName: service.serviceName,
    context: request.project.contextTar(service.context, withoutRegistrySecrets(ignore, service.context), dockerfile.extraFiles),
    dockerfile: dockerfile.path,
    network: request.network,
    tag,
    buildArgs: service.args,
    platform: formatPlatform(job.platform),
    nocache: request.nocache,
    registryConfig: buildRegistryConfig(job.secrets),
    signal: job.signal,
    onLine,
  })
  checkPlatform(job, built, 'its base image in the server\'s engine is for another platform')
  return built
}

/** Names a Dockerfile builds from (`FROM`, `COPY --from=`), leaving out its own stages and `scratch`; undefined when one is made of build args. */
function baseImagesOf(dockerfile: string): string[] | undefined {
  const stages = new Set<string>(['scratch'])
  const bases: string[] = []
  for (const [, from, stage] of dockerfile.matchAll(/^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?/gim)) {
    if (!stages.has(from.toLowerCase())) bases.push(from)
    if (stage) stages.add(stage.toLowerCase())
  }

  for (const [, from] of dockerfile.matchAll(/--from=(\S+)/gi)) if (!stages.has(from.toLowerCase()) && !/^\d+$/.test(from)) bases.push(from)
  return bases.some((base) => base.includes('$')) ? undefined : bases
}

/**
 * What decides a service's build, as one SHA-256: its context (contents, not modification times), Dockerfile,
 * build args, platform, network, and the engine's image of every base it names. Undefined when a base is chosen
 * by a build arg: then only a build can tell.
 */
async function buildDigestOf(job: ReleaseJob, service: BuildService, dockerfile: ServiceDockerfile): Promise<string | undefined> {
  const {request} = job
  const bases = baseImagesOf(dockerfile.text)
  if (!bases) return undefined
  const baseIds = await Promise.all(bases.map(async (base) => `${base}=${(await inspectLocalImage(request.docker, base))?.imageId ?? 'absent'}`))
  const ignore = withoutRegistrySecrets(await readContextIgnore(request.project, service.context), service.context)
  const args = Object.entries(service.args ?? {}).sort(([left], [right]) => (left < right ? -1 : left > right ? 1 : 0))
  const decisive = {
    context: request.project.contextDigest(service.context, ignore, dockerfile.extraFiles),
    dockerfile: dockerfile.path,
    args,
    platform: formatPlatform(job.platform),
    network: request.network,
    bases: baseIds,
  }
  return createHash('sha256').update(JSON.stringify(decisive)).digest('hex')
}

/**
 * Makes an earlier release's image of this service part of this one when it was built from the same digest and
 * the engine still has it for the fleet's platform; pushed again, so the registry surely holds it. Whether it did.
 */
async function reuseUnchangedImage(job: ReleaseJob, service: BuildService, digest: string, onLine: (line: BuildLine) => void): Promise<boolean> {
  const {request} = job
  const earlier = await request.store.findReusableImage(service.serviceName, digest)
  if (!earlier) return false
  const tag = `${earlier.location}:latest`
  const local = await inspectLocalImage(request.docker, tag)
  if (!local || !platformMatches(local.platform, job.platform)) return false
  await request.store.reuseImage(earlier.imageId)
  if (request.registry) {
    const contentHash = await pushImage(request.docker, tag, onLine, job.signal, request.registryCredentials)
    if (contentHash !== earlier.contentHash) await request.store.updateImage(earlier.imageId, {content_hash: contentHash, push_timestamp: new Date().toISOString()})
  }

  onLine({message: `Build context, Dockerfile and base images unchanged since release ${earlier.releaseId}: reusing its image, no build`})
  return true
}

/** The upload's registry credentials never reach an image, whatever the Dockerfile copies. */
function withoutRegistrySecrets(ignore: ProjectIgnore, context: string): ProjectIgnore {
  const secretsPath = path.posix.relative(context, REGISTRY_SECRETS_PATH)
  return {ignores: (relativePath) => relativePath === secretsPath || ignore.ignores(relativePath)}
}

/**
 * An image-only service's image: the engine's own copy when it has one for the fleet's platform, else pulled for
 * that platform (from the Docker Hub mirror when one is configured, with the upload's registry credentials).
 */
async function fetchImageOf(job: ReleaseJob, service: ImageService, tag: string, onLine: (line: BuildLine) => void): Promise<MadeImage> {
  const {docker} = job.request
  const platform = formatPlatform(job.platform)
  let local = await inspectLocalImage(docker, service.image)
  if (!local || !platformMatches(local.platform, job.platform)) {
    const mirrored = job.request.registryMirror ? mirroredReference(service.image, job.request.registryMirror) : undefined
    const source = mirrored ?? service.image
    onLine({message: `Pulling ${source} for ${platform}`})
    try {
      await pullImage(docker, {reference: source, platform, auth: pullCredentials(job.secrets, source), signal: job.signal, onLine})
    } catch (error) {
      throw new BuildFailedError(`could not pull image "${source}" for ${platform}: ${(error as Error).message}`)
    }

    if (mirrored) await tagImage(docker, mirrored, service.image.includes(':') || service.image.includes('@') ? service.image : `${service.image}:latest`)
    local = await inspectLocalImage(docker, source)
    if (!local) throw new BuildFailedError(`image "${source}" was pulled but the engine does not have it`)
  }

  checkPlatform(job, local, `image "${service.image}" has no ${platform} variant`)
  await tagImage(docker, local.imageId, tag)
  onLine({message: `Using ${service.image} (${local.imageId.slice(0, 19)})`})
  return local
}

/** Makes one service's image (built or fetched), pushes it, and records the outcome; returns the failure line, if any. */
async function makeServiceImage(job: ReleaseJob, service: ProjectService, tags: string[]): Promise<string | undefined> {
  const {request} = job
  const prefix = `[${service.serviceName}]`
  const serviceLog: string[] = []
  const onLine = (line: BuildLine) => {
    if (!line.replace) serviceLog.push(line.message)
    job.say(`${prefix} ${line.message}`, {replace: line.replace})
  }

  let imageRow: {imageId: number; location: string} | undefined
  try {
    const serviceId = await request.store.ensureService(service.serviceName)
    const dockerfile = service.type === 'build' ? await dockerfileFor(request.project, service, request.deviceType, request.arch) : undefined
    const digest = service.type === 'build' ? await buildDigestOf(job, service, dockerfile as ServiceDockerfile) : undefined
    if (digest && !request.nocache && (await reuseUnchangedImage(job, service as BuildService, digest, onLine))) return undefined
    imageRow = await request.store.createImage(serviceId, {dockerfile: dockerfile?.text ?? null, projectType: projectTypeOf(service)})
    const tag = `${imageRow.location}:latest`
    tags.push(tag)
    await request.store.updateImage(imageRow.imageId, {status: 'running', start_timestamp: new Date().toISOString()})
    const made = service.type === 'build' ? await buildImageOf(job, service, dockerfile as ServiceDockerfile, tag, onLine) : await fetchImageOf(job, service, tag, onLine)
    const contentHash = request.registry ? await pushImage(request.docker, tag, onLine, job.signal, request.registryCredentials) : made.imageId
    await request.store.updateImage(imageRow.imageId, {
      status: 'success',
      image_size: made.size,
      content_hash: contentHash,
      architecture: formatPlatform(made.platform),
      context_digest: digest ?? null,
      push_timestamp: request.registry ? new Date().toISOString() : null,
      end_timestamp: new Date().toISOString(),
      build_log: serviceLog.join('\n'),
    })
    job.say(`${prefix} Image ${service.type === 'build' ? 'built' : 'ready'} for ${formatPlatform(made.platform)} (${(made.size / 1024 / 1024).toFixed(1)} MiB)`)
    return undefined
  } catch (error) {
    const message = job.timeout.signal.aborted ? job.timeout.message : job.signal.aborted ? 'build cancelled' : error instanceof Error ? error.message : String(error)
    if (imageRow) {
      await request.store.updateImage(imageRow.imageId, {
        status: job.signal.aborted && request.signal.aborted ? 'cancelled' : 'failed',
        error_message: message,
        end_timestamp: new Date().toISOString(),
        build_log: serviceLog.join('\n'),
      })
    }

    return `${prefix} ${message}`
  }
}

/** The fleet's platform, or a refusal for an architecture flotilla cannot build for. */
function fleetPlatform(request: ReleaseBuildRequest): Platform {
  const platform = platformOfArch(request.arch)
  if (!platform) throw new ExpectedError(`fleets of CPU architecture "${request.arch}" (${request.deviceType}) cannot be built for by this server`)
  return platform
}

/**
 * Makes every service's image of an uploaded project in parallel, for the fleet's platform: builds the ones with
 * a Dockerfile, fetches the image-only ones; pushes the images and records each image's outcome.
 * The release's own status is the caller's to write, from the result: success only when every image is made
 * and pushed. A failed or cancelled build removes the images it tagged, so nothing is left under the fleet's names.
 */
export async function buildRelease(request: ReleaseBuildRequest): Promise<ReleaseBuildResult> {
  const log: string[] = []
  const say: ReleaseJob['say'] = (message, extra = {}) => {
    if (!extra.replace) log.push(message)
    request.emit({message, ...extra})
  }

  let project
  let platform: Platform
  let secrets: RegistrySecrets
  try {
    platform = fleetPlatform(request)
    // No environment: `${VAR}` takes values from the project's .env only (flotilla's CLI sends the compose file
    // already resolved from the user's shell); the server's own environment never reaches a release.
    project = await describeProject(request.project, {deviceType: request.deviceType, arch: request.arch, dockerfile: request.dockerfilePath})
    secrets = await readRegistrySecrets(request.project)
  } catch (error) {
    const message = error instanceof ExpectedError ? error.message : String(error)
    say(`[Error] ${message}`, {isError: true})
    return {status: 'failed', composition: null, buildLog: log.join('\n'), error: message}
  }

  for (const warning of project.warnings) say(`[Warn] ${warning}`)
  say(`[Info] Building ${project.services.map((service) => service.serviceName).join(', ')} for ${request.deviceType} (${request.arch}, ${formatPlatform(platform)})`)
  if (project.services.some((service) => service.type === 'build')) {
    const notice = await emulationNotice((await request.docker.info()).Architecture as string, platform)
    if (notice) say(notice)
  }

  const tags: string[] = []
  const stopOthers = new AbortController()
  const timeout = AbortSignal.timeout(request.timeoutMs)
  const timedOut = `the build took longer than ${formatDuration(request.timeoutMs)}, the server's limit (server start --build-timeout)`
  const job: ReleaseJob = {request, platform, secrets, say, signal: AbortSignal.any([request.signal, stopOthers.signal, timeout]), timeout: {signal: timeout, message: timedOut}}
  const failures: string[] = []
  await Promise.all(
    project.services.map(async (service) => {
      const failure = await makeServiceImage(job, service, tags)
      if (failure === undefined) return
      failures.push(failure)
      stopOthers.abort()
    }),
  )

  const cancelled = request.signal.aborted || (await request.store.isCancelled())
  if (failures.length > 0 || cancelled) {
    await Promise.all(tags.map((tag) => request.docker.getImage(tag).remove({force: true}).catch(() => undefined)))
    const status = cancelled ? 'cancelled' : 'failed'
    const error = cancelled ? 'the build was cancelled' : timeout.aborted ? `[Error] ${timedOut}` : (failures.find((failure) => !failure.endsWith('build cancelled')) ?? failures[0])
    say(cancelled ? '[Info] Build cancelled' : error, {isError: true})
    return {status, composition: project.composition, buildLog: log.join('\n'), error}
  }

  say('[Info] Release built and pushed', {isSuccess: true})
  return {status: 'success', composition: project.composition, buildLog: log.join('\n')}
}

function formatDuration(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000} min` : `${ms / 1000} s`
}

function projectTypeOf(service: ProjectService): string {
  if (service.type === 'image') return 'Image'
  return {template: 'Dockerfile.template', 'device-type': 'Architecture-specific Dockerfile', arch: 'Architecture-specific Dockerfile', plain: 'Standard Dockerfile'}[service.dockerfileKind]
}

/** A repository name for a new image: balena names them by a hash, unique per image. */
export function newImageRepository(registry: string | null): string {
  const hash = randomBytes(16).toString('hex')
  return `${registry ?? 'localhost'}/v2/${hash}`
}
