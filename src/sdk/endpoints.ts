import {UsageError} from '../errors.js'

/** Where a remote's services live, as the well-known document of a flotilla server or balena's naming tells. */
export interface Endpoints {
  api: string
  builder: string
  /** [flotilla] `hostKey`: the gateway's public host key (`ssh-ed25519 AAAA…`), so clients can pin it. */
  ssh: {host: string; port: number; hostKey?: string}
  tunnel: string
  registry: string | null
  version?: string
}

/** A URL with a scheme is a flotilla server; a bare domain is balena-style (`balena-cloud.com`). */
export function isFlotillaUrl(remote: string): boolean {
  return /^https?:\/\//i.test(remote)
}

export function balenaEndpoints(domain: string): Endpoints {
  const proxy = domain === 'balena-cloud.com' ? 'balena-devices.com' : domain
  return {
    api: `https://api.${domain}`,
    builder: `https://builder.${domain}`,
    ssh: {host: `ssh.${proxy}`, port: 22},
    tunnel: `https://tunnel.${domain}:443`,
    registry: `registry2.${domain}`,
  }
}

/** The API root of a remote, known without asking the server. */
export function apiUrlOf(remote: string): string {
  return isFlotillaUrl(remote) ? remote.replace(/\/+$/, '') : balenaEndpoints(remote).api
}

/** The endpoints a user points at by hand, for a remote that does not tell them (`FLOTILLA_BUILDER_URL`…). */
export interface EndpointOverrides {
  builder?: string
  tunnel?: string
  ssh?: {host: string; port: number}
}

export type EndpointKind = keyof EndpointOverrides

/** The environment variable that points at each endpoint, named in the errors that need one. */
export const ENDPOINT_SETTINGS: Record<EndpointKind, string> = {builder: 'FLOTILLA_BUILDER_URL', tunnel: 'FLOTILLA_TUNNEL_URL', ssh: 'FLOTILLA_SSH_HOST'}

const ENDPOINT_NAMES: Record<EndpointKind, string> = {builder: 'builder', tunnel: 'tunnel proxy', ssh: 'SSH gateway'}

function httpUrlSetting(name: string, value: string): string {
  let url: URL | undefined
  try {
    url = new URL(value)
  } catch {}

  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new UsageError(`${name} must be an http:// or https:// URL, not "${value}"`)
  return value.replace(/\/+$/, '')
}

/** `FLOTILLA_BUILDER_URL`, `FLOTILLA_TUNNEL_URL` (URLs) and `FLOTILLA_SSH_HOST` (`host` or `host:port`, port 22 by default). */
export function endpointOverridesFrom(env: Record<string, string | undefined>): EndpointOverrides {
  const overrides: EndpointOverrides = {}
  if (env.FLOTILLA_BUILDER_URL) overrides.builder = httpUrlSetting('FLOTILLA_BUILDER_URL', env.FLOTILLA_BUILDER_URL)
  if (env.FLOTILLA_TUNNEL_URL) overrides.tunnel = httpUrlSetting('FLOTILLA_TUNNEL_URL', env.FLOTILLA_TUNNEL_URL)
  if (env.FLOTILLA_SSH_HOST) {
    const match = /^(\[[^\]]+\]|[^:\s]+)(?::(\d{1,5}))?$/.exec(env.FLOTILLA_SSH_HOST.trim())
    const port = match?.[2] === undefined ? 22 : Number(match[2])
    if (!match || port < 1 || port > 65_535) throw new UsageError(`FLOTILLA_SSH_HOST must be a host name or address, with :port when not 22, not "${env.FLOTILLA_SSH_HOST}"`)
    overrides.ssh = {host: match[1].replace(/^\[(.*)\]$/, '$1'), port}
  }

  return overrides
}

/** The balena domain of an API URL named `https://api.<domain>`, whose other services balena names after it. */
export function balenaDomainOf(apiUrl: string): string | undefined {
  const {hostname} = new URL(apiUrl)
  return /^api\.[^.]+\.[^.]/.test(hostname) ? hostname.slice('api.'.length) : undefined
}

/** The one line a command needing an endpoint says when the remote does not tell it. */
export function missingEndpointMessage(kind: EndpointKind, remote: string): string {
  return `${remote} does not say where its ${ENDPOINT_NAMES[kind]} is (it is not a flotilla server: it has no /.well-known/flotilla.json) — set ${ENDPOINT_SETTINGS[kind]}, or log in with its balena domain (flotilla login --url <domain>)`
}
