import path from 'node:path'

import {ExpectedError} from '../errors.js'
import {type ComposeBuild, type ComposeEnvironmentOptions, type Composition, compositionText, resolveComposeFile, singleServiceComposition} from './compose.js'
import {type ProjectFiles, projectFiles} from './files.js'
import type {TemplateTarget} from './template.js'

/** Which file a service is built from: balena picks the most specific one present. */
export type DockerfileKind = 'device-type' | 'arch' | 'template' | 'plain'

export interface BuildService {
  type: 'build'
  serviceName: string
  /** The build context: a folder inside the project, POSIX, relative to the project folder (`.` is the folder itself). */
  context: string
  /** POSIX, relative to the context. */
  dockerfilePath: string
  dockerfileKind: DockerfileKind
  args: Record<string, string>
  target?: string
}

/** A service run from a ready image (compose `image:` without `build:`): nothing of it is built. */
export interface ImageService {
  type: 'image'
  serviceName: string
  image: string
}

export type ProjectService = BuildService | ImageService

export interface ProjectDescription {
  /** The compose file the project was read from, or undefined for a single-Dockerfile project. */
  composeFile?: string
  services: ProjectService[]
  composition: Composition
  /** What the user should know about the compose file, e.g. a variable that was not set (one line each). */
  warnings: string[]
  /**
   * The compose file with its variables substituted and its `env_file:`s merged, to send in place of the
   * original; undefined when the original needs nothing of that.
   */
  resolvedComposeText?: string
}

export interface DescribeOptions extends TemplateTarget, ComposeEnvironmentOptions {
  /** A Dockerfile other than the usual ones for a single-Dockerfile project, relative to the project folder. */
  dockerfile?: string
}

const COMPOSE_FILES = ['docker-compose.yml', 'docker-compose.yaml']

async function isFile(files: ProjectFiles, relativePath: string): Promise<boolean> {
  return (await files.kind(relativePath)) === 'file'
}

async function isDirectory(files: ProjectFiles, relativePath: string): Promise<boolean> {
  return (await files.kind(relativePath)) === 'directory'
}

/** A relative POSIX path that stays inside its base, or undefined for anything absolute, remote or climbing out. */
function normaliseInsidePath(relative: string): string | undefined {
  if (relative.includes('://') || relative.startsWith('git@') || path.posix.isAbsolute(relative) || path.win32.isAbsolute(relative)) return undefined
  const normalised = path.posix.normalize(relative.replaceAll('\\', '/')).replace(/\/+$/, '') || '.'
  if (normalised === '..' || normalised.startsWith('../')) return undefined
  return normalised
}

function kindOfNamedDockerfile(name: string): DockerfileKind {
  return name.endsWith('.template') ? 'template' : 'plain'
}

/** The most specific Dockerfile in a context: device type, then architecture, then template, then plain. */
async function findDockerfile(files: ProjectFiles, context: string, target: TemplateTarget): Promise<{dockerfilePath: string; dockerfileKind: DockerfileKind} | undefined> {
  const candidates: Array<[string, DockerfileKind]> = [
    [`Dockerfile.${target.deviceType}`, 'device-type'],
    [`Dockerfile.${target.arch}`, 'arch'],
    ['Dockerfile.template', 'template'],
    ['Dockerfile', 'plain'],
  ]
  for (const [name, kind] of candidates) {
    if (await isFile(files, path.posix.join(context, name))) return {dockerfilePath: name, dockerfileKind: kind}
  }

  return undefined
}

async function findComposeFile(files: ProjectFiles): Promise<string | undefined> {
  const present: string[] = []
  for (const name of COMPOSE_FILES) {
    if (await isFile(files, name)) present.push(name)
  }

  if (present.length > 1) throw new ExpectedError(`${files.label} has both ${present.join(' and ')} — keep one of them`)
  return present[0]
}

async function describeBuildService(files: ProjectFiles, composeFile: string, serviceName: string, build: ComposeBuild, target: TemplateTarget): Promise<BuildService> {
  const where = `${composeFile}: service "${serviceName}"`
  const context = normaliseInsidePath(build.context)
  if (context === undefined) {
    throw new ExpectedError(`${where} has build context "${build.context}", which is not a folder inside the project — flotilla sends only the project folder`)
  }

  if (!(await isDirectory(files, context))) {
    throw new ExpectedError(`${where} has build context "${build.context}", which is not a folder in ${files.label} — create it or fix the path`)
  }

  const common = {type: 'build' as const, serviceName, context, args: build.args ?? {}, ...(build.target === undefined ? {} : {target: build.target})}
  if (build.dockerfile !== undefined) {
    const dockerfilePath = normaliseInsidePath(build.dockerfile)
    if (dockerfilePath === undefined) throw new ExpectedError(`${where} has dockerfile "${build.dockerfile}", which is not inside its build context`)
    if (!(await isFile(files, path.posix.join(context, dockerfilePath)))) {
      throw new ExpectedError(`${where} names dockerfile "${build.dockerfile}", which is not a file in its build context "${context}"`)
    }

    return {...common, dockerfilePath, dockerfileKind: kindOfNamedDockerfile(dockerfilePath)}
  }

  const found = await findDockerfile(files, context, target)
  if (!found) {
    throw new ExpectedError(`${where} has no Dockerfile in its build context "${context}" — add a Dockerfile or Dockerfile.template there`)
  }

  return {...common, ...found}
}

async function describeComposeProject(files: ProjectFiles, composeFile: string, options: DescribeOptions): Promise<ProjectDescription> {
  if (options.dockerfile !== undefined) {
    throw new ExpectedError(`a Dockerfile name cannot be given for a project with ${composeFile} — set build.dockerfile of its services instead`)
  }

  const {composition, warnings, changed} = await resolveComposeFile(files, composeFile, options)
  const services: ProjectService[] = []
  for (const [serviceName, service] of Object.entries(composition.services)) {
    if (service.build) services.push(await describeBuildService(files, composeFile, serviceName, service.build, options))
    else if (service.image) services.push({type: 'image', serviceName, image: service.image})
  }

  return {composeFile, services, composition, warnings, ...(changed ? {resolvedComposeText: compositionText(composition)} : {})}
}

async function describeSingleDockerfileProject(files: ProjectFiles, options: DescribeOptions): Promise<ProjectDescription> {
  if (options.dockerfile !== undefined) {
    const dockerfilePath = normaliseInsidePath(options.dockerfile)
    if (dockerfilePath === undefined) throw new ExpectedError(`Dockerfile "${options.dockerfile}" is not inside the project folder ${files.label}`)
    if (!(await isFile(files, dockerfilePath))) throw new ExpectedError(`Dockerfile "${options.dockerfile}" is not a file in ${files.label}`)
    return {
      services: [{type: 'build', serviceName: 'main', context: '.', dockerfilePath, dockerfileKind: kindOfNamedDockerfile(dockerfilePath), args: {}}],
      composition: singleServiceComposition(dockerfilePath),
      warnings: [],
    }
  }

  const found = await findDockerfile(files, '.', options)
  if (!found) {
    throw new ExpectedError(
      `${files.label} has nothing to build — add a Dockerfile, Dockerfile.template, Dockerfile.${options.deviceType}, Dockerfile.${options.arch} or docker-compose.yml`,
    )
  }

  return {services: [{type: 'build', serviceName: 'main', context: '.', args: {}, ...found}], composition: singleServiceComposition(), warnings: []}
}

/**
 * Says what a project folder builds, as balena's builder would see it for a fleet of the given device type:
 * a compose file's services, or one service named `main` for a single Dockerfile. Throws before anything is
 * uploaded when the folder has nothing to build or its compose file is wrong.
 */
export async function describeProject(project: string | ProjectFiles, options: DescribeOptions): Promise<ProjectDescription> {
  const files = projectFiles(project)
  if (!(await isDirectory(files, '.'))) throw new ExpectedError(`project folder ${files.label} does not exist or is not a folder`)
  const composeFile = await findComposeFile(files)
  return composeFile === undefined ? describeSingleDockerfileProject(files, options) : describeComposeProject(files, composeFile, options)
}
