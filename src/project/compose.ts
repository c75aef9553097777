import path from 'node:path'

import {parse as parseYaml, stringify as stringifyYaml} from 'yaml'

import {ExpectedError} from '../errors.js'
import {
  dependenciesOf,
  engineSettingsOf,
  networkSettingsOf,
  ServiceConfigError,
  serviceNetworksOf,
  SUPPORTED_NETWORK_KEYS,
  SUPPORTED_SERVICE_KEYS,
  SUPPORTED_VOLUME_KEYS,
  volumeSettingsOf,
} from '../protocol/service-config.js'
import {readEnvFile} from './env-file.js'
import {type ProjectFiles, projectFiles} from './files.js'
import {escapeDollars, interpolateDocument} from './interpolation.js'

/** The compose version balena normalises every composition to. */
export const COMPOSITION_VERSION = '2.1'

export interface ComposeBuild {
  /** A folder inside the project, POSIX, relative to the project folder. */
  context: string
  /** Relative to the context, as the compose file gave it. */
  dockerfile?: string
  args?: Record<string, string>
  labels?: Record<string, string>
  target?: string
  [key: string]: unknown
}

export interface ComposeService {
  build?: ComposeBuild
  image?: string
  environment?: Record<string, string>
  labels?: Record<string, string>
  [key: string]: unknown
}

/** A compose file validated and normalised the way balena stores it in `release.composition`. */
export interface Composition {
  version: string
  services: Record<string, ComposeService>
  volumes: Record<string, Record<string, unknown>>
  networks: Record<string, Record<string, unknown>>
}

const TOP_LEVEL_KEYS = new Set(['version', 'services', 'volumes', 'networks'])

/** The service keys of the compose file format 2.4: the ones the device does not apply are refused by name. */
const COMPOSE_SERVICE_KEYS = new Set([
  'blkio_config', 'build', 'cap_add', 'cap_drop', 'cgroup_parent', 'command', 'container_name', 'cpu_period', 'cpu_quota',
  'cpu_rt_period', 'cpu_rt_runtime', 'cpu_shares', 'cpus', 'cpuset', 'depends_on', 'device_cgroup_rules', 'devices', 'dns',
  'dns_opt', 'dns_search', 'domainname', 'entrypoint', 'env_file', 'environment', 'expose', 'extends', 'external_links',
  'extra_hosts', 'group_add', 'healthcheck', 'hostname', 'image', 'init', 'ipc', 'isolation', 'labels', 'links', 'logging',
  'mac_address', 'mem_limit', 'mem_reservation', 'mem_swappiness', 'memswap_limit', 'network_mode', 'networks',
  'oom_kill_disable', 'oom_score_adj', 'pid', 'pids_limit', 'platform', 'ports', 'privileged', 'profiles', 'read_only',
  'restart', 'runtime', 'security_opt', 'shm_size', 'stdin_open', 'stop_grace_period', 'stop_signal', 'storage_opt',
  'sysctls', 'tmpfs', 'tty', 'ulimits', 'user', 'userns_mode', 'volume_driver', 'volumes', 'volumes_from', 'working_dir',
])

const SERVICE_KEYS = new Set<string>(SUPPORTED_SERVICE_KEYS)

const BUILD_KEYS = new Set(['args', 'cache_from', 'context', 'dockerfile', 'extra_hosts', 'labels', 'network', 'shm_size', 'target'])

const NAME = /^[a-zA-Z0-9._-]+$/

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function isExtension(key: string): boolean {
  return key.startsWith('x-')
}

/** Compose accepts `KEY=value` lists and `{KEY: value}` maps alike; the rest of flotilla sees maps only. */
function normaliseKeyValues(value: unknown, where: string): Record<string, string> {
  if (Array.isArray(value)) {
    return Object.fromEntries(
      value.map((item) => {
        if (typeof item !== 'string') throw new ExpectedError(`${where} must list KEY=value strings`)
        const separator = item.indexOf('=')
        return separator === -1 ? [item.trim(), ''] : [item.slice(0, separator).trim(), item.slice(separator + 1)]
      }),
    )
  }

  if (isMapping(value)) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, item === null || item === undefined ? '' : String(item)]))
  }

  throw new ExpectedError(`${where} must be a map or a list of KEY=value strings`)
}

function normaliseNamedMappings(value: unknown, key: string, fileName: string): Record<string, Record<string, unknown>> {
  if (value === undefined || value === null) return {}
  if (!isMapping(value)) throw new ExpectedError(`${fileName}: "${key}" must be a map of names`)
  return Object.fromEntries(
    Object.entries(value).map(([name, definition]) => {
      if (definition !== null && !isMapping(definition)) throw new ExpectedError(`${fileName}: ${key} "${name}" must be a map or empty`)
      return [name, definition ?? {}]
    }),
  )
}

function normaliseBuild(build: unknown, where: string): ComposeBuild {
  if (typeof build === 'string') {
    if (build === '') throw new ExpectedError(`${where} has an empty build context — give the service's folder, e.g. "build: ."`)
    return {context: build}
  }

  if (!isMapping(build)) throw new ExpectedError(`${where} has a build that is neither a folder nor a map`)
  for (const key of Object.keys(build)) {
    if (!BUILD_KEYS.has(key)) {
      throw new ExpectedError(`${where} has an unknown build key "${key}" — known keys: ${[...BUILD_KEYS].join(', ')}`)
    }
  }

  if (typeof build.context !== 'string' || build.context === '') {
    throw new ExpectedError(`${where} has no build context — add "context:" under "build:" (the service's folder, e.g. ".")`)
  }

  if (build.dockerfile !== undefined && typeof build.dockerfile !== 'string') throw new ExpectedError(`${where}: build.dockerfile must be a file name`)
  const normalised: ComposeBuild = {...build, context: build.context}
  if (build.args !== undefined) normalised.args = normaliseKeyValues(build.args, `${where}: build.args`)
  if (build.labels !== undefined) normalised.labels = normaliseKeyValues(build.labels, `${where}: build.labels`)
  return normalised
}

function normaliseService(name: string, service: unknown, fileName: string): ComposeService {
  const where = `${fileName}: service "${name}"`
  if (!NAME.test(name)) throw new ExpectedError(`${where} has an invalid name — use letters, digits, ".", "_" and "-"`)
  if (!isMapping(service)) throw new ExpectedError(`${where} must be a map of settings`)
  for (const key of Object.keys(service)) {
    if (SERVICE_KEYS.has(key) || isExtension(key)) continue
    if (COMPOSE_SERVICE_KEYS.has(key)) throw new ExpectedError(`${where} uses "${key}", which devices do not apply — remove it (balena's supervisor does not support it either)`)
    throw new ExpectedError(`${where} has an unknown key "${key}" — check its spelling`)
  }

  if (service.build === undefined && service.image === undefined) {
    throw new ExpectedError(`${where} has neither "build" nor "image" — add one to say what to run`)
  }

  if (service.image !== undefined && (typeof service.image !== 'string' || service.image === '')) {
    throw new ExpectedError(`${where}: "image" must be an image name`)
  }

  const normalised: ComposeService = {...service}
  if (service.build !== undefined) normalised.build = normaliseBuild(service.build, where)
  if (service.environment !== undefined) normalised.environment = normaliseKeyValues(service.environment, `${where}: environment`)
  if (service.labels !== undefined) normalised.labels = normaliseKeyValues(service.labels, `${where}: labels`)
  checkDeviceSettings(normalised, where)
  return normalised
}

/** What a `volumes:` entry of a service mounts: a volume name or a host path; undefined for an anonymous volume or a tmpfs. */
function volumeSourceOf(volume: unknown): unknown {
  if (typeof volume === 'string') return volume.includes(':') ? volume.slice(0, volume.indexOf(':')) : undefined
  return isMapping(volume) ? volume.source : undefined
}

/** Converts what the device will convert, so a value it could not apply is refused here rather than on the device. */
function checkDeviceSettings(service: ComposeService, where: string): void {
  try {
    engineSettingsOf(service)
    dependenciesOf(service)
    serviceNetworksOf(service)
  } catch (error) {
    if (error instanceof ServiceConfigError) throw new ExpectedError(`${where}: ${error.message}`)
    throw error
  }

  const networkMode = service.network_mode
  if (networkMode !== undefined && (typeof networkMode !== 'string' || !/^(host|bridge|none|service:.+)$/.test(networkMode))) {
    throw new ExpectedError(`${where}: "network_mode" must be host, bridge, none or service:<name> — a container outside the app cannot be joined`)
  }

  if (networkMode !== undefined && service.networks !== undefined) throw new ExpectedError(`${where} has both "network_mode" and "networks" — keep one`)
  for (const volume of Array.isArray(service.volumes) ? service.volumes : service.volumes === undefined ? [] : [service.volumes]) {
    const source = volumeSourceOf(volume)
    const type = isMapping(volume) ? volume.type : undefined
    if (typeof volume !== 'string' && !isMapping(volume)) throw new ExpectedError(`${where}: "volumes" must list "name:/path" strings or {type, source, target} maps`)
    if (type === 'bind' || (typeof source === 'string' && /^[./~]/.test(source))) {
      throw new ExpectedError(`${where} mounts the host path "${String(source)}" — devices allow named volumes only; host paths come through io.balena.features.* labels`)
    }
  }
}

/** The names a service refers to (volumes, networks, other services) exist in the file, as compose requires. */
function checkReferences(composition: Composition, fileName: string): void {
  for (const [name, service] of Object.entries(composition.services)) {
    const where = `${fileName}: service "${name}"`
    for (const dependency of Object.keys(dependenciesOf(service))) {
      if (!composition.services[dependency]) throw new ExpectedError(`${where} depends on "${dependency}", which is not a service of this file`)
      if (dependency === name) throw new ExpectedError(`${where} depends on itself`)
    }

    for (const network of Object.keys(serviceNetworksOf(service))) {
      if (network !== 'default' && !composition.networks[network]) throw new ExpectedError(`${where} joins network "${network}", which the file does not declare under "networks:"`)
    }

    for (const volume of Array.isArray(service.volumes) ? service.volumes : []) {
      const source = volumeSourceOf(volume)
      if (typeof source === 'string' && !composition.volumes[source]) throw new ExpectedError(`${where} mounts volume "${source}", which the file does not declare under "volumes:"`)
    }
  }
}

function checkDefinitions(composition: Composition, fileName: string): void {
  const kinds = [
    {key: 'networks', definitions: composition.networks, supported: new Set<string>(SUPPORTED_NETWORK_KEYS), convert: networkSettingsOf},
    {key: 'volumes', definitions: composition.volumes, supported: new Set<string>(SUPPORTED_VOLUME_KEYS), convert: volumeSettingsOf},
  ]
  for (const {key, definitions, supported, convert} of kinds) {
    for (const [name, definition] of Object.entries(definitions)) {
      const where = `${fileName}: ${key} "${name}"`
      const refused = Object.keys(definition).find((option) => !supported.has(option) && !isExtension(option))
      if (refused) throw new ExpectedError(`${where} uses "${refused}", which devices do not apply — supported: ${[...supported].join(', ')}`)
      try {
        convert(definition)
      } catch (error) {
        if (error instanceof ServiceConfigError) throw new ExpectedError(`${where}: ${error.message}`)
        throw error
      }
    }
  }
}

function parseYamlDocument(text: string, fileName: string): unknown {
  try {
    return parseYaml(text)
  } catch (error) {
    throw new ExpectedError(`${fileName} is not valid YAML: ${(error as Error).message.split('\n')[0]}`, {cause: error})
  }
}

function normaliseDocument(document: unknown, fileName: string): Composition {
  if (!isMapping(document)) throw new ExpectedError(`${fileName} must be a map with a "services" key`)
  for (const key of Object.keys(document)) {
    if (!TOP_LEVEL_KEYS.has(key) && !isExtension(key)) {
      throw new ExpectedError(`${fileName} has an unknown top-level key "${key}" — a compose file holds version, services, volumes and networks`)
    }
  }

  if (document.version !== undefined && typeof document.version !== 'string' && typeof document.version !== 'number') {
    throw new ExpectedError(`${fileName}: "version" must be a string such as "2.1"`)
  }

  if (!isMapping(document.services) || Object.keys(document.services).length === 0) {
    throw new ExpectedError(`${fileName} defines no services — add a "services:" map`)
  }

  const composition: Composition = {
    version: COMPOSITION_VERSION,
    services: Object.fromEntries(Object.entries(document.services).map(([name, service]) => [name, normaliseService(name, service, fileName)])),
    volumes: normaliseNamedMappings(document.volumes, 'volumes', fileName),
    networks: normaliseNamedMappings(document.networks, 'networks', fileName),
  }
  checkDefinitions(composition, fileName)
  checkReferences(composition, fileName)
  return composition
}

/** Parses, validates and normalises the text of a compose file as it is, without substitution; `fileName` only names the file in errors. */
export function parseComposition(text: string, fileName: string): Composition {
  return normaliseDocument(parseYamlDocument(text, fileName), fileName)
}

export interface ComposeEnvironmentOptions {
  /**
   * The environment of the pushing shell, which wins over the project's `.env` in `${VAR}` substitution. The
   * builder passes none: it must never put its own environment into a user's release.
   */
  environment?: Record<string, string | undefined>
  /** Whether `env_file:` may name a file outside the project folder: yes on the user's machine, never on the builder. */
  allowPathsOutsideProject?: boolean
}

export interface ResolvedComposition {
  composition: Composition
  /** One line per variable that was unset and had no default (substituted by an empty string), as compose warns. */
  warnings: string[]
  /** Whether substitution or `env_file:` changed anything: then the resolved file must be sent instead of the original. */
  changed: boolean
}

function envFileReferences(value: unknown, where: string): Array<{path: string; required: boolean}> {
  const items = Array.isArray(value) ? value : [value]
  return items.map((item) => {
    if (typeof item === 'string' && item !== '') return {path: item, required: true}
    if (isMapping(item) && typeof item.path === 'string' && item.path !== '' && (item.required === undefined || typeof item.required === 'boolean')) {
      return {path: item.path, required: item.required ?? true}
    }

    throw new ExpectedError(`${where}: env_file must be a file name, a list of them, or {path, required}`)
  })
}

/** The variables of a service's `env_file:` files, later files winning, read relative to the project folder. */
async function readServiceEnvFiles(files: ProjectFiles, value: unknown, where: string, options: ComposeEnvironmentOptions, lookup: (name: string) => string | undefined) {
  let variables: Record<string, string> = {}
  for (const reference of envFileReferences(value, where)) {
    const relative = path.posix.normalize(reference.path.replaceAll('\\', '/'))
    if (!options.allowPathsOutsideProject && (relative === '..' || relative.startsWith('../') || path.posix.isAbsolute(relative))) {
      throw new ExpectedError(`${where}: env_file "${reference.path}" is outside the project folder — the builder reads only the project`)
    }

    variables = {...variables, ...(await readEnvFile(files, relative, {fileName: `env_file "${reference.path}" of ${where.replace(/^.*?: /, '')}`, required: reference.required, lookup}))}
  }

  return variables
}

/**
 * Reads a compose file as `docker compose` does before it talks to an engine: variables substituted from the
 * given environment over the project's `.env`, then each service's `env_file:` merged under its `environment`
 * (`environment` wins) and the `env_file` key dropped, then validated and normalised as balena stores it.
 */
export async function resolveComposeFile(project: string | ProjectFiles, fileName: string, options: ComposeEnvironmentOptions = {}): Promise<ResolvedComposition> {
  const files = projectFiles(project)
  const text = await files.readText(fileName)
  if (text === undefined) throw new ExpectedError(`${fileName} does not exist in ${files.label}`)
  const environment = options.environment ?? {}
  const shellLookup = (name: string) => environment[name]
  const dotEnv = await readEnvFile(files, '.env', {fileName: '.env', required: false, lookup: shellLookup})
  const lookup = (name: string) => environment[name] ?? dotEnv[name]
  const unset = new Set<string>()
  const document = interpolateDocument(parseYamlDocument(text, fileName), fileName, lookup, (name) => unset.add(name))
  const composition = normaliseDocument(document, fileName)
  let changed = text.includes('$')
  for (const [name, service] of Object.entries(composition.services)) {
    if (service.env_file === undefined) continue
    const fromFiles = await readServiceEnvFiles(files, service.env_file, `${fileName}: service "${name}"`, options, lookup)
    const {env_file: _envFile, ...rest} = service
    composition.services[name] = {...rest, environment: {...fromFiles, ...service.environment}}
    changed = true
  }

  const warnings = [...unset].map((name) => `The "${name}" variable is not set. Defaulting to a blank string.`)
  return {composition, warnings, changed}
}

/** A composition as compose file text, `$` written as `$$` so reading it again substitutes nothing. */
export function compositionText(composition: Composition): string {
  return stringifyYaml(escapeDollars(composition))
}

/** The composition balena gives a project with a single Dockerfile: one privileged service named `main`. */
export function singleServiceComposition(dockerfile?: string): Composition {
  return {
    version: COMPOSITION_VERSION,
    services: {
      main: {
        build: dockerfile === undefined ? {context: '.'} : {context: '.', dockerfile},
        privileged: true,
        tty: true,
        restart: 'always',
        network_mode: 'host',
        volumes: ['resin-data:/data'],
        labels: {
          'io.resin.features.kernel-modules': '1',
          'io.resin.features.firmware': '1',
          'io.resin.features.dbus': '1',
          'io.resin.features.supervisor-api': '1',
          'io.resin.features.resin-api': '1',
        },
      },
    },
    volumes: {'resin-data': {}},
    networks: {},
  }
}
