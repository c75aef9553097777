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
