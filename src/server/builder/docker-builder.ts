import type {Readable} from 'node:stream'

import type Docker from 'dockerode'

import {ExpectedError} from '../../errors.js'
import {type Platform, platformOfImage} from '../../protocol/platform.js'

/** One line of a service's build output; `replace` lines (progress) overwrite the previous one on a terminal. */
export interface BuildLine {
  message: string
  replace?: boolean
}

/** Where RUN steps are networked: nowhere, the engine's default bridge, or the host's network. */
export const BUILD_NETWORKS = ['none', 'default', 'host'] as const
export type BuildNetwork = (typeof BUILD_NETWORKS)[number]

export interface ServiceImageBuild {
  serviceName: string
  /** A tar of the service's build context. */
  context: Readable
  /** The Dockerfile's path inside the context. */
  dockerfile: string
  /** The tag the built image gets (`<registry>/v2/<hash>:latest` or a local name). */
  tag: string
  buildArgs?: Record<string, string>
  /** The platform the image is built for (`linux/arm64`); RUN steps of a foreign one run under emulation. */
  platform?: string
  network: BuildNetwork
  nocache?: boolean
  /** Credentials for the registries its `FROM` images are pulled from, by registry (the engine's X-Registry-Config). */
  registryConfig?: Record<string, {username: string; password: string; serveraddress: string}>
  signal?: AbortSignal
  onLine: (line: BuildLine) => void
}

export interface BuiltImage {
  imageId: string
  size: number
  platform: Platform
}

export class BuildFailedError extends ExpectedError {}

interface DockerMessage {
  stream?: string
  status?: string
  progress?: string
  id?: string
  error?: string
  errorDetail?: {message?: string}
  aux?: {ID?: string; Digest?: string; Size?: number}
}

/** Reads the engine's JSON-lines progress stream, handing each message over as it arrives. */
async function readDockerMessages(stream: NodeJS.ReadableStream, onMessage: (message: DockerMessage) => void): Promise<void> {
  let buffer = ''
  for await (const chunk of stream) {
    buffer += chunk.toString()
    let newline: number
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).trim()
      buffer = buffer.slice(newline + 1)
      if (line) onMessage(JSON.parse(line) as DockerMessage)
    }
  }

  if (buffer.trim()) onMessage(JSON.parse(buffer) as DockerMessage)
}

function forwardMessage(message: DockerMessage, onLine: (line: BuildLine) => void): void {
  if (message.stream !== undefined) {
    for (const text of message.stream.replace(/\n$/, '').split('\n')) onLine({message: text})
  } else if (message.status !== undefined) {
    const prefix = message.id ? `${message.id}: ` : ''
    onLine({message: `${prefix}${message.status}${message.progress ? ` ${message.progress}` : ''}`, replace: Boolean(message.progress)})
  }
}

/** Builds one service's image with the engine, streaming its output; fails with the engine's own error message. */
export async function buildServiceImage(docker: Docker, build: ServiceImageBuild): Promise<BuiltImage> {
  const stream = await docker.buildImage(build.context, {
    t: build.tag,
    dockerfile: build.dockerfile,
    nocache: build.nocache ?? false,
    buildargs: build.buildArgs ?? {},
    rm: true,
    forcerm: true,
    networkmode: build.network,
    ...(build.platform ? {platform: build.platform} : {}),
    ...(build.registryConfig && Object.keys(build.registryConfig).length > 0 ? {registryconfig: build.registryConfig} : {}),
    abortSignal: build.signal,
  } as Docker.ImageBuildOptions)
  let failure: string | undefined
  let imageId: string | undefined
  await readDockerMessages(stream, (message) => {
    if (message.error !== undefined) failure = message.errorDetail?.message ?? message.error
    else if (message.aux?.ID) imageId = message.aux.ID
    else forwardMessage(message, build.onLine)
  })
  if (failure !== undefined) throw new BuildFailedError(`service ${build.serviceName} failed to build: ${failure.trim()}`)
  const image = await docker.getImage(build.tag).inspect()
  return {imageId: imageId ?? image.Id, size: image.Size, platform: platformOfImage(image)}
}

export interface ImagePull {
  /** What to pull, as an engine names it (`redis:7`, `registry.example:5000/team/app@sha256:…`). */
  reference: string
  platform: string
  auth?: Docker.AuthConfig
  signal?: AbortSignal
  onLine: (line: BuildLine) => void
}

/** Pulls an image for a platform into the engine, streaming its progress; fails with the engine's own error message. */
export async function pullImage(docker: Docker, pull: ImagePull): Promise<void> {
  // The engine wants an X-Registry-Auth header even for a registry without auth: an empty one does.
  const stream = await docker.pull(pull.reference, {platform: pull.platform, authconfig: pull.auth ?? {}, abortSignal: pull.signal} as Record<string, unknown>)
  let failure: string | undefined
  await readDockerMessages(stream, (message) => {
    if (message.error !== undefined) failure = message.errorDetail?.message ?? message.error
    else forwardMessage(message, pull.onLine)
  })
  if (failure !== undefined) throw new BuildFailedError(failure.trim())
}

/** The image a reference names in the engine, with its platform and size; undefined when the engine has none. */
export async function inspectLocalImage(docker: Docker, reference: string): Promise<(BuiltImage & {platform: Platform}) | undefined> {
  try {
    const image = await docker.getImage(reference).inspect()
    return {imageId: image.Id, size: image.Size, platform: platformOfImage(image)}
  } catch (error) {
    if ((error as {statusCode?: number}).statusCode === 404) return undefined
    throw error
  }
}

/** Gives an image in the engine another name (`<registry>/v2/<hash>:latest`). */
export async function tagImage(docker: Docker, reference: string, tag: string): Promise<void> {
  const colon = tag.lastIndexOf(':')
  await docker.getImage(reference).tag({repo: tag.slice(0, colon), tag: tag.slice(colon + 1)})
}

/** What the engine logs in to a registry with; it asks a token registry's token endpoint itself. */
export interface RegistryCredentials {
  username: string
  password: string
  /** `host:port` of the registry. */
  serveraddress: string
}

/**
 * Pushes a built image to its registry (the tag names it) with the build's credentials; returns the digest the
 * registry answered.
 */
export async function pushImage(docker: Docker, tag: string, onLine: (line: BuildLine) => void, signal?: AbortSignal, credentials?: RegistryCredentials): Promise<string> {
  // The engine wants an X-Registry-Auth header even for a registry without auth: an empty one does.
  const stream = await docker.getImage(tag).push({authconfig: credentials ?? {}, abortSignal: signal} as Record<string, unknown>)
  let failure: string | undefined
  let digest: string | undefined
  await readDockerMessages(stream, (message) => {
    if (message.error !== undefined) failure = message.errorDetail?.message ?? message.error
    else if (message.aux?.Digest) digest = message.aux.Digest
    else forwardMessage(message, onLine)
  })
  if (failure !== undefined) throw new BuildFailedError(`pushing ${tag} failed: ${failure.trim()}`)
  if (!digest) throw new BuildFailedError(`pushing ${tag} gave no digest`)
  return digest
}
