import type {FastifyInstance, FastifyRequest} from 'fastify'

import {credentialOf, GUEST, resolveActor} from '../auth/actor.js'
import type {ServerContext} from '../context.js'
import {notFound, unauthorized} from '../http-errors.js'
import {BUILDER_USERNAME, grantedAccess, parseScopes, type RegistryAuthority, type RegistryPrincipal, signRegistryToken} from '../registry/tokens.js'

/** `Authorization: Basic` as the Docker engine sends it for a registry login: the user name and the password. */
function basicCredentials(header: string | undefined): {username: string; password: string} | undefined {
  const match = header?.match(/^Basic\s+([A-Za-z\d+/=]+)\s*$/i)
  if (!match) return undefined
  const text = Buffer.from(match[1], 'base64').toString('utf8')
  const separator = text.indexOf(':')
  return separator === -1 ? undefined : {username: text.slice(0, separator), password: text.slice(separator + 1)}
}

/**
 * Who asks: a running build (its credential), an API actor (a session or API key as the Basic password or a
 * Bearer token; `d_<uuid>` must be that device's key), or nobody without credentials. Bad credentials are a 401.
 */
async function principalOf(context: ServerContext, authority: RegistryAuthority, request: FastifyRequest): Promise<RegistryPrincipal> {
  const basic = basicCredentials(request.headers.authorization)
  if (basic?.username === BUILDER_USERNAME) {
    const releaseId = await authority.builds.releaseOf(basic.password)
    if (releaseId === undefined) throw unauthorized()
    return {kind: 'build', releaseId}
  }

  const credential = basic ? basic.password : credentialOf(request.headers, request.query)
  if (!credential) return GUEST
  const actor = await resolveActor(context.db, context.secret, credential)
  if (!actor) throw unauthorized()
  const deviceName = basic?.username.match(/^d_([\da-f]+)$/i)?.[1]
  if (deviceName !== undefined && (actor.kind !== 'device' || actor.uuid !== deviceName.toLowerCase())) throw unauthorized()
  return actor
}

/** The scopes asked for: `scope` repeated (the Docker engine), or `scope[0]`, `scope[1]`… (balena-cli's query strings). */
function scopeValues(query: Record<string, unknown>): unknown[] {
  return Object.entries(query)
    .filter(([key]) => /^scope(?:\[\d*\])?$/.test(key))
    .flatMap(([, value]) => (Array.isArray(value) ? value : [value]))
}

function subjectOf(principal: RegistryPrincipal): string {
  switch (principal.kind) {
    case 'user': {
      return principal.username
    }

    case 'device': {
      return `d_${principal.uuid}`
    }

    case 'application': {
      return principal.slug
    }

    case 'build': {
      return BUILDER_USERNAME
    }

    case 'guest': {
      return ''
    }
  }
}

/**
 * The Docker token endpoint (balena's path): `GET /auth/v1/token?service=<registry>&scope=repository:<name>:pull,push`
 * answers a token granting the part of the scopes the caller may have — a device pulls its fleet's release images,
 * a build pushes its own release's, a fleet member pulls and pushes their fleets' (deploy) — and nothing else.
 */
export function registerRegistryTokenRoute(app: FastifyInstance, context: ServerContext): void {
  app.get('/auth/v1/token', async (request) => {
    const authority = context.registryAuthority
    if (!context.registry || !authority) throw notFound('this server has no Docker registry (it was started with --no-registry): images stay in its local engine')
    const principal = await principalOf(context, authority, request)
    const query = request.query as Record<string, unknown>
    const requested = query.service === context.registry ? parseScopes(scopeValues(query)) : []
    const access = await grantedAccess(context.db, context.registry, principal, requested)
    return signRegistryToken(authority.key, {service: context.registry, subject: subjectOf(principal), access})
  })
}
