import type Docker from 'dockerode'

/**
 * How a service's compose keys become the engine's container settings, the way balena's supervisor maps them.
 * `flotilla push` and the builder run the same conversion to refuse a composition the device could not apply,
 * so what the agent receives converts without error; every error names the key and says what is expected.
 */

/** The service keys the device applies. Every other compose key is refused at push, never dropped on the device. */
export const SUPPORTED_SERVICE_KEYS = [
  'build', 'cap_add', 'cap_drop', 'cgroup_parent', 'command', 'cpu_quota', 'cpu_shares', 'cpus', 'cpuset', 'depends_on',
  'device_cgroup_rules', 'devices', 'dns', 'dns_opt', 'dns_search', 'domainname', 'entrypoint', 'env_file', 'environment',
  'expose', 'extra_hosts', 'group_add', 'healthcheck', 'hostname', 'image', 'init', 'ipc', 'labels', 'mac_address',
  'mem_limit', 'mem_reservation', 'network_mode', 'networks', 'oom_kill_disable', 'oom_score_adj', 'pid', 'pids_limit',
  'ports', 'privileged', 'read_only', 'restart', 'security_opt', 'shm_size', 'stop_grace_period', 'stop_signal',
  'storage_opt', 'sysctls', 'tmpfs', 'tty', 'ulimits', 'user', 'userns_mode', 'volumes', 'working_dir',
] as const

/** Keys of a top-level network definition the device applies. */
export const SUPPORTED_NETWORK_KEYS = ['driver', 'driver_opts', 'enable_ipv6', 'internal', 'ipam', 'labels'] as const

/** Keys of a top-level volume definition the device applies. */
export const SUPPORTED_VOLUME_KEYS = ['driver', 'driver_opts', 'labels'] as const

/** Container-level and host-level settings of the engine's create call that follow from the compose keys. */
export interface EngineSettings {
  container: Pick<Docker.ContainerCreateOptions, 'Domainname' | 'ExposedPorts' | 'Healthcheck' | 'Hostname' | 'MacAddress' | 'StopSignal' | 'StopTimeout'>
  host: Docker.HostConfig & {DeviceCgroupRules?: string[]; Init?: boolean}
}

export type DependencyCondition = 'service_started' | 'service_healthy'

/** Thrown for a value the device cannot apply; the message names the key. */
export class ServiceConfigError extends TypeError {}

function fail(message: string): never {
  throw new ServiceConfigError(message)
}

function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function stringList(value: unknown, key: string, allowSingle = false): string[] {
  if (allowSingle && typeof value === 'string') return [value]
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) fail(`"${key}" must be a list of strings${allowSingle ? ' or a string' : ''}`)
  return value
}

function text(value: unknown, key: string): string {
  if (typeof value !== 'string') fail(`"${key}" must be a string`)
  return value
}

function integer(value: unknown, key: string): number {
  const number = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value
  if (typeof number !== 'number' || !Number.isInteger(number)) fail(`"${key}" must be a whole number`)
  return number
}

function boolean(value: unknown, key: string): boolean {
  if (typeof value !== 'boolean') fail(`"${key}" must be true or false`)
  return value
}

/** `512m`, `1g`, `1024`, `64mb` → bytes, as compose reads memory sizes. */
export function parseBytes(value: unknown, key: string): number {
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) return value
  const match = typeof value === 'string' ? /^(\d+)\s*([bkmg]?)b?$/i.exec(value.trim()) : null
  if (!match) fail(`"${key}" must be a size such as "512m" or "1g"`)
  return Number(match[1]) * 1024 ** 'bkmg'.indexOf(match[2].toLowerCase() || 'b')
}

const DURATION_UNITS: Record<string, number> = {ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9}

/** `1m30s`, `10s`, `500ms` → nanoseconds, as compose reads durations. */
export function parseDurationNs(value: unknown, key: string): number {
  if (typeof value === 'number' && value >= 0) return Math.round(value * 1e9)
  const source = typeof value === 'string' ? value.trim() : ''
  const parts = [...source.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)]
  if (source === '' || parts.map((part) => part[0]).join('') !== source) fail(`"${key}" must be a duration such as "10s" or "1m30s"`)
  return Math.round(parts.reduce((total, [, amount, unit]) => total + Number(amount) * DURATION_UNITS[unit], 0))
}

function keyValues(value: unknown, key: string, separator = '='): Record<string, string> {
  if (isMapping(value)) return Object.fromEntries(Object.entries(value).map(([name, item]) => [name, String(item ?? '')]))
  return Object.fromEntries(stringList(value, key).map((item) => {
    const at = item.indexOf(separator)
    if (at <= 0) fail(`"${key}" entry "${item}" must be NAME${separator}value`)
    return [item.slice(0, at), item.slice(at + 1)]
  }))
}

function portRange(text: string, key: string, entry: string): number[] {
  const match = /^(\d+)(?:-(\d+))?$/.exec(text)
  const first = match ? Number(match[1]) : Number.NaN
  const last = match?.[2] ? Number(match[2]) : first
  if (!match || first < 1 || last > 65_535 || last < first) fail(`"${key}" entry "${entry}" is not a port mapping — write "8080:80", "80" or "127.0.0.1:8080:80/udp"`)
  return Array.from({length: last - first + 1}, (_, index) => first + index)
}

interface PortMapping {
  containerPort: number
  protocol: string
  hostPort?: number
  hostIp?: string
}

/** One `ports:` entry, short (`[ip:][host:]container[/proto]`, ranges allowed) or long syntax. */
function portMappings(entry: unknown, key: string): PortMapping[] {
  if (isMapping(entry)) {
    const containerPort = integer(entry.target, `${key}.target`)
    const protocol = entry.protocol === undefined ? 'tcp' : text(entry.protocol, `${key}.protocol`)
    const hostPort = entry.published === undefined ? undefined : integer(entry.published, `${key}.published`)
    const hostIp = entry.host_ip === undefined ? undefined : text(entry.host_ip, `${key}.host_ip`)
    return [{containerPort, protocol, hostPort, hostIp}]
  }

  if (typeof entry !== 'string' && typeof entry !== 'number') fail(`"${key}" must list ports such as "8080:80"`)
  const written = String(entry)
  const [ports, protocol = 'tcp'] = written.split('/')
  const bracketed = /^\[([^\]]+)\]:(.*)$/.exec(ports)
  const parts = bracketed ? [bracketed[1], ...bracketed[2].split(':')] : ports.split(':')
  if (parts.length > 3 || !/^(tcp|udp|sctp)$/.test(protocol)) fail(`"${key}" entry "${written}" is not a port mapping — write "8080:80", "80" or "127.0.0.1:8080:80/udp"`)
  const containerPorts = portRange(parts.at(-1)!, key, written)
  const hostIp = parts.length === 3 ? parts[0] : undefined
  const hostText = parts.length >= 2 ? parts.at(-2)! : ''
  const hostPorts = hostText === '' ? undefined : portRange(hostText, key, written)
  if (hostPorts && hostPorts.length !== containerPorts.length) fail(`"${key}" entry "${written}" maps ranges of different lengths`)
  return containerPorts.map((containerPort, index) => ({containerPort, protocol, hostPort: hostPorts?.[index], hostIp}))
}

function portSettings(ports: unknown, expose: unknown, settings: EngineSettings): void {
  const exposed: Record<string, object> = {}
  for (const entry of expose === undefined ? [] : (Array.isArray(expose) ? expose : fail('"expose" must be a list of ports'))) {
    const [range, protocol = 'tcp'] = String(entry).split('/')
    for (const port of portRange(range, 'expose', String(entry))) exposed[`${port}/${protocol}`] = {}
  }

  const bindings: Record<string, Array<{HostIp: string; HostPort: string}>> = {}
  for (const entry of ports === undefined ? [] : (Array.isArray(ports) ? ports : fail('"ports" must be a list of ports'))) {
    for (const mapping of portMappings(entry, 'ports')) {
      const name = `${mapping.containerPort}/${mapping.protocol}`
      exposed[name] = {}
      bindings[name] = [...(bindings[name] ?? []), {HostIp: mapping.hostIp ?? '', HostPort: mapping.hostPort === undefined ? '' : String(mapping.hostPort)}]
    }
  }

  if (Object.keys(exposed).length > 0) settings.container.ExposedPorts = exposed
  if (Object.keys(bindings).length > 0) settings.host.PortBindings = bindings
}

function healthcheckOf(value: unknown): Docker.HealthConfig {
  if (!isMapping(value)) fail('"healthcheck" must be a map with "test"')
  if (value.disable === true) return {Test: ['NONE']}
  const test = typeof value.test === 'string' ? ['CMD-SHELL', value.test] : stringList(value.test, 'healthcheck.test')
  if (!['NONE', 'CMD', 'CMD-SHELL'].includes(test[0])) fail('"healthcheck.test" must be a command string, or a list starting with CMD, CMD-SHELL or NONE')
  const health: Docker.HealthConfig = {Test: test}
  if (value.interval !== undefined) health.Interval = parseDurationNs(value.interval, 'healthcheck.interval')
  if (value.timeout !== undefined) health.Timeout = parseDurationNs(value.timeout, 'healthcheck.timeout')
  if (value.start_period !== undefined) health.StartPeriod = parseDurationNs(value.start_period, 'healthcheck.start_period')
  if (value.retries !== undefined) health.Retries = integer(value.retries, 'healthcheck.retries')
  return health
}

function ulimitsOf(value: unknown): Array<{Name: string; Soft: number; Hard: number}> {
  if (!isMapping(value)) fail('"ulimits" must be a map such as {nofile: {soft: 1024, hard: 2048}}')
  return Object.entries(value).map(([name, limit]) => {
    if (isMapping(limit)) return {Name: name, Soft: integer(limit.soft, `ulimits.${name}.soft`), Hard: integer(limit.hard, `ulimits.${name}.hard`)}
    const both = integer(limit, `ulimits.${name}`)
    return {Name: name, Soft: both, Hard: both}
  })
}

function devicesOf(value: unknown): Array<{PathOnHost: string; PathInContainer: string; CgroupPermissions: string}> {
  return stringList(value, 'devices').map((entry) => {
    const [onHost, inContainer = onHost, permissions = 'rwm'] = entry.split(':')
    if (!onHost.startsWith('/') || !inContainer.startsWith('/') || !/^[rwm]+$/.test(permissions)) fail(`"devices" entry "${entry}" must be /dev/host[:/dev/container[:rwm]]`)
    return {PathOnHost: onHost, PathInContainer: inContainer, CgroupPermissions: permissions}
  })
}

function tmpfsOf(value: unknown): Record<string, string> {
  return Object.fromEntries(stringList(value, 'tmpfs', true).map((entry) => {
    const at = entry.indexOf(':')
    const target = at === -1 ? entry : entry.slice(0, at)
    if (!target.startsWith('/')) fail(`"tmpfs" entry "${entry}" must be an absolute path, optionally with options ("/run:size=64k")`)
    return [target, at === -1 ? '' : entry.slice(at + 1)]
  }))
}

function extraHostsOf(value: unknown): string[] {
  if (isMapping(value)) return Object.entries(value).map(([host, address]) => `${host}:${String(address)}`)
  // The engine wants host:address; compose also writes host=address.
  return stringList(value, 'extra_hosts').map((entry) => entry.replace('=', ':'))
}

type Converter = (value: unknown, settings: EngineSettings) => void

/** One converter a key that maps to engine settings; keys handled elsewhere (image, command, networks…) are absent. */
const CONVERTERS: Record<string, Converter> = {
  cap_add: (value, {host}) => { host.CapAdd = stringList(value, 'cap_add') },
  cap_drop: (value, {host}) => { host.CapDrop = stringList(value, 'cap_drop') },
  cgroup_parent: (value, {host}) => { host.CgroupParent = text(value, 'cgroup_parent') },
  cpu_quota: (value, {host}) => { host.CpuQuota = integer(value, 'cpu_quota') },
  cpu_shares: (value, {host}) => { host.CpuShares = integer(value, 'cpu_shares') },
  cpus(value, {host}) {
    const cpus = Number(value)
    if (typeof value === 'boolean' || !Number.isFinite(cpus) || cpus <= 0) fail('"cpus" must be a number of CPUs such as 0.5')
    host.NanoCpus = Math.round(cpus * 1e9)
  },
  cpuset: (value, {host}) => { host.CpusetCpus = typeof value === 'number' ? String(value) : text(value, 'cpuset') },
  device_cgroup_rules: (value, {host}) => { host.DeviceCgroupRules = stringList(value, 'device_cgroup_rules') },
  devices: (value, {host}) => { host.Devices = devicesOf(value) },
  dns: (value, {host}) => { host.Dns = stringList(value, 'dns', true) },
  dns_opt: (value, {host}) => { host.DnsOptions = stringList(value, 'dns_opt') },
  dns_search: (value, {host}) => { host.DnsSearch = stringList(value, 'dns_search', true) },
  domainname: (value, {container}) => { container.Domainname = text(value, 'domainname') },
  extra_hosts: (value, {host}) => { host.ExtraHosts = extraHostsOf(value) },
  group_add: (value, {host}) => { host.GroupAdd = (Array.isArray(value) ? value : fail('"group_add" must be a list of groups')).map(String) },
  healthcheck: (value, {container}) => { container.Healthcheck = healthcheckOf(value) },
  hostname: (value, {container}) => { container.Hostname = text(value, 'hostname') },
  init: (value, {host}) => { host.Init = boolean(value, 'init') },
  ipc: (value, {host}) => { host.IpcMode = text(value, 'ipc') },
  mac_address: (value, {container}) => { container.MacAddress = text(value, 'mac_address') },
  mem_limit: (value, {host}) => { host.Memory = parseBytes(value, 'mem_limit') },
  mem_reservation: (value, {host}) => { host.MemoryReservation = parseBytes(value, 'mem_reservation') },
  oom_kill_disable: (value, {host}) => { host.OomKillDisable = boolean(value, 'oom_kill_disable') },
  oom_score_adj: (value, {host}) => { host.OomScoreAdj = integer(value, 'oom_score_adj') },
  pid: (value, {host}) => { host.PidMode = text(value, 'pid') },
  pids_limit: (value, {host}) => { host.PidsLimit = integer(value, 'pids_limit') },
  read_only: (value, {host}) => { host.ReadonlyRootfs = boolean(value, 'read_only') },
  security_opt: (value, {host}) => { host.SecurityOpt = stringList(value, 'security_opt') },
  shm_size: (value, {host}) => { host.ShmSize = parseBytes(value, 'shm_size') },
  stop_grace_period: (value, {container}) => { container.StopTimeout = Math.ceil(parseDurationNs(value, 'stop_grace_period') / 1e9) },
  stop_signal: (value, {container}) => { container.StopSignal = text(value, 'stop_signal') },
  storage_opt: (value, {host}) => { host.StorageOpt = keyValues(value, 'storage_opt') },
  sysctls: (value, {host}) => { host.Sysctls = keyValues(value, 'sysctls') },
  tmpfs: (value, {host}) => { host.Tmpfs = {...host.Tmpfs, ...tmpfsOf(value)} },
  ulimits: (value, {host}) => { host.Ulimits = ulimitsOf(value) },
  userns_mode: (value, {host}) => { host.UsernsMode = text(value, 'userns_mode') },
}

/** The engine settings a service's compose keys ask for; keys absent from the composition are left to the engine's defaults. */
export function engineSettingsOf(composition: Record<string, unknown>): EngineSettings {
  const settings: EngineSettings = {container: {}, host: {}}
  for (const [key, convert] of Object.entries(CONVERTERS)) {
    const value = composition[key]
    if (value !== undefined && value !== null) convert(value, settings)
  }

  portSettings(composition.ports ?? undefined, composition.expose ?? undefined, settings)
  for (const volume of Array.isArray(composition.volumes) ? composition.volumes : []) {
    if (isMapping(volume) && volume.type === 'tmpfs') {
      const size = isMapping(volume.tmpfs) && volume.tmpfs.size !== undefined ? `size=${parseBytes(volume.tmpfs.size, 'volumes.tmpfs.size')}` : ''
      settings.host.Tmpfs = {...settings.host.Tmpfs, [text(volume.target, 'volumes.target')]: size}
    }
  }

  return settings
}

/** The services a service waits for before it starts, and for each whether it must be healthy or only started. */
export function dependenciesOf(composition: Record<string, unknown>): Record<string, DependencyCondition> {
  const dependencies: Record<string, DependencyCondition> = {}
  const value = composition.depends_on
  if (Array.isArray(value)) {
    for (const name of stringList(value, 'depends_on')) dependencies[name] = 'service_started'
  } else if (isMapping(value)) {
    for (const [name, options] of Object.entries(value)) {
      const condition = isMapping(options) && options.condition !== undefined ? options.condition : 'service_started'
      if (condition !== 'service_started' && condition !== 'service_healthy') fail(`"depends_on.${name}.condition" must be service_started or service_healthy`)
      dependencies[name] = condition
    }
  } else if (value !== undefined && value !== null) {
    fail('"depends_on" must be a list of services or a map of them to {condition}')
  }

  const sharedNetwork = typeof composition.network_mode === 'string' ? /^service:(.+)$/.exec(composition.network_mode) : null
  if (sharedNetwork) dependencies[sharedNetwork[1]] ??= 'service_started'
  return dependencies
}

export interface ServiceNetworkEndpoint {
  aliases?: string[]
  ipv4_address?: string
  ipv6_address?: string
  link_local_ips?: string[]
}

/** A service's `networks:` as a map of the app's network names to the endpoint options of each. */
export function serviceNetworksOf(composition: Record<string, unknown>): Record<string, ServiceNetworkEndpoint> {
  const value = composition.networks
  if (value === undefined || value === null) return {}
  if (Array.isArray(value)) return Object.fromEntries(stringList(value, 'networks').map((name) => [name, {}]))
  if (!isMapping(value)) fail('"networks" must be a list of network names or a map of them to options')
  return Object.fromEntries(Object.entries(value).map(([name, options]) => {
    if (options === null || options === undefined) return [name, {}]
    if (!isMapping(options)) fail(`"networks.${name}" must be a map of options`)
    const endpoint: ServiceNetworkEndpoint = {}
    if (options.aliases !== undefined) endpoint.aliases = stringList(options.aliases, `networks.${name}.aliases`)
    if (options.ipv4_address !== undefined) endpoint.ipv4_address = text(options.ipv4_address, `networks.${name}.ipv4_address`)
    if (options.ipv6_address !== undefined) endpoint.ipv6_address = text(options.ipv6_address, `networks.${name}.ipv6_address`)
    if (options.link_local_ips !== undefined) endpoint.link_local_ips = stringList(options.link_local_ips, `networks.${name}.link_local_ips`)
    return [name, endpoint]
  }))
}

/** A top-level network definition as the engine's create options (without its name and labels of ownership). */
export function networkSettingsOf(definition: Record<string, unknown>): Omit<Docker.NetworkCreateOptions, 'Name'> {
  const ipam = definition.ipam ?? {}
  if (!isMapping(ipam)) fail('"ipam" must be a map with driver, config and options')
  const pools = ipam.config === undefined ? [] : Array.isArray(ipam.config) ? ipam.config : fail('"ipam.config" must be a list of {subnet, ip_range, gateway, aux_addresses}')
  return {
    Driver: definition.driver === undefined ? 'bridge' : text(definition.driver, 'driver'),
    Options: definition.driver_opts === undefined ? {} : keyValues(definition.driver_opts, 'driver_opts'),
    Internal: definition.internal === undefined ? false : boolean(definition.internal, 'internal'),
    EnableIPv6: definition.enable_ipv6 === undefined ? false : boolean(definition.enable_ipv6, 'enable_ipv6'),
    Labels: definition.labels === undefined ? {} : keyValues(definition.labels, 'labels'),
    IPAM: {
      Driver: ipam.driver === undefined ? 'default' : text(ipam.driver, 'ipam.driver'),
      Options: ipam.options === undefined ? {} : keyValues(ipam.options, 'ipam.options'),
      Config: pools.map((pool: unknown) => {
        if (!isMapping(pool)) fail('"ipam.config" entries must be maps')
        return {
          ...(pool.subnet === undefined ? {} : {Subnet: text(pool.subnet, 'ipam.config.subnet')}),
          ...(pool.ip_range === undefined ? {} : {IPRange: text(pool.ip_range, 'ipam.config.ip_range')}),
          ...(pool.gateway === undefined ? {} : {Gateway: text(pool.gateway, 'ipam.config.gateway')}),
          ...(pool.aux_addresses === undefined ? {} : {AuxiliaryAddresses: keyValues(pool.aux_addresses, 'ipam.config.aux_addresses')}),
        }
      }),
    },
  }
}

/** A top-level volume definition as the engine's create options (without its name and labels of ownership). */
export function volumeSettingsOf(definition: Record<string, unknown>): {Driver: string; DriverOpts: Record<string, string>; Labels: Record<string, string>} {
  return {
    Driver: definition.driver === undefined ? 'local' : text(definition.driver, 'driver'),
    DriverOpts: definition.driver_opts === undefined ? {} : keyValues(definition.driver_opts, 'driver_opts'),
    Labels: definition.labels === undefined ? {} : keyValues(definition.labels, 'labels'),
  }
}
