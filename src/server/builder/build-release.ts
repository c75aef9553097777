import {randomBytes} from 'node:crypto'
import path from 'node:path'

import type Docker from 'dockerode'

import {ExpectedError} from '../../errors.js'
import type {BuildEvent} from '../../protocol/build-events.js'
import {describeProject, type BuildService} from '../../project/detect.js'
import {readContextIgnore} from '../../project/ignore.js'
import {resolveDockerfileTemplate} from '../../project/template.js'
import {type BuildLine, type BuildNetwork, buildServiceImage, pushImage, type RegistryCredentials} from './docker-builder.js'
import type {UploadedProject} from './upload.js'

/** What the build needs of the database; the route supplies it, so this module stays free of SQL. */
export interface BuildStore {
  /** The service row of the fleet named so, created when missing. */
  ensureService(serviceName: string): Promise<number>
  /** A new image row for a service of this release; returns its id and the repository it is stored under. */
  createImage(serviceId: number, details: {dockerfile: string; projectType: string}): Promise<{imageId: number; location: string}>
  updateImage(imageId: number, patch: Record<string, unknown>): Promise<void>
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

/**
 * Builds every service of an unpacked project in parallel, pushes the images, and records each image's outcome.
 * The release's own status is the caller's to write, from the result: success only when every image is built
 * and pushed. A failed or cancelled build removes the images it tagged, so nothing is left under the fleet's names.
 */
export async function buildRelease(request: ReleaseBuildRequest): Promise<ReleaseBuildResult> {
  const log: string[] = []
  const say = (message: string, extra: {isError?: boolean; isSuccess?: boolean; replace?: boolean} = {}) => {
    if (!extra.replace) log.push(message)
    request.emit({message, ...extra})
  }

  let project
  try {
    // No environment: `${VAR}` takes values from the project's .env only (flotilla's CLI sends the compose file
    // already resolved from the user's shell); the server's own environment never reaches a release.
    project = await describeProject(request.project, {deviceType: request.deviceType, arch: request.arch, dockerfile: request.dockerfilePath})
  } catch (error) {
    const message = error instanceof ExpectedError ? error.message : String(error)
    say(`[Error] ${message}`, {isError: true})
    return {status: 'failed', composition: null, buildLog: log.join('\n'), error: message}
  }

  for (const warning of project.warnings) say(`[Warn] ${warning}`)
  const builds = project.services.filter((service): service is BuildService => service.type === 'build')
  say(`[Info] Building ${builds.map((service) => service.serviceName).join(', ')} for ${request.deviceType} (${request.arch})`)
  const tags: string[] = []
  const failures: string[] = []
  const stopOthers = new AbortController()
  const timeout = AbortSignal.timeout(request.timeoutMs)
  const signal = AbortSignal.any([request.signal, stopOthers.signal, timeout])
  const timedOut = `the build took longer than ${formatDuration(request.timeoutMs)}, the server's limit (server start --build-timeout)`

  await Promise.all(
    builds.map(async (service) => {
      const prefix = `[${service.serviceName}]`
      const serviceId = await request.store.ensureService(service.serviceName)
      let imageRow: {imageId: number; location: string} | undefined
      const serviceLog: string[] = []
      const onLine = (line: BuildLine) => {
        if (!line.replace) serviceLog.push(line.message)
        say(`${prefix} ${line.message}`, {replace: line.replace})
      }

      try {
        const dockerfile = await dockerfileFor(request.project, service, request.deviceType, request.arch)
        imageRow = await request.store.createImage(serviceId, {dockerfile: dockerfile.text, projectType: dockerfileKindLabel(service)})
        const tag = `${imageRow.location}:latest`
        tags.push(tag)
        await request.store.updateImage(imageRow.imageId, {status: 'running', start_timestamp: new Date().toISOString()})
        const built = await buildServiceImage(request.docker, {
          serviceName: service.serviceName,
          context: request.project.contextTar(service.context, await readContextIgnore(request.project, service.context), dockerfile.extraFiles),
          dockerfile: dockerfile.path,
          network: request.network,
          tag,
          buildArgs: service.args,
          nocache: request.nocache,
          signal,
          onLine,
        })
        let contentHash = built.imageId
        if (request.registry) contentHash = await pushImage(request.docker, tag, onLine, signal, request.registryCredentials)
        await request.store.updateImage(imageRow.imageId, {
          status: 'success',
          image_size: built.size,
          content_hash: contentHash,
          push_timestamp: request.registry ? new Date().toISOString() : null,
          end_timestamp: new Date().toISOString(),
          build_log: serviceLog.join('\n'),
        })
        say(`${prefix} Image built (${(built.size / 1024 / 1024).toFixed(1)} MiB)`)
      } catch (error) {
        const message = timeout.aborted ? timedOut : signal.aborted ? 'build cancelled' : error instanceof Error ? error.message : String(error)
        failures.push(`${prefix} ${message}`)
        stopOthers.abort()
        if (imageRow) {
          await request.store.updateImage(imageRow.imageId, {
            status: signal.aborted && request.signal.aborted ? 'cancelled' : 'failed',
            error_message: message,
            end_timestamp: new Date().toISOString(),
            build_log: serviceLog.join('\n'),
          })
        }
      }
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

function dockerfileKindLabel(service: BuildService): string {
  return {template: 'Dockerfile.template', 'device-type': 'Architecture-specific Dockerfile', arch: 'Architecture-specific Dockerfile', plain: 'Standard Dockerfile'}[service.dockerfileKind]
}

/** A repository name for a new image: balena names them by a hash, unique per image. */
export function newImageRepository(registry: string | null): string {
  const hash = randomBytes(16).toString('hex')
  return `${registry ?? 'localhost'}/v2/${hash}`
}
