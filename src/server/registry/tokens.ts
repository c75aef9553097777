import {createHmac, hkdfSync, randomBytes, timingSafeEqual} from 'node:crypto'

import {SignJWT} from 'jose'
import {sql} from 'kysely'

import type {Actor} from '../auth/actor.js'
import type {RegistryCredentials} from '../builder/docker-builder.js'
import {visibleRows} from '../authorization.js'
import type {Db} from '../db/database.js'
import {RESOURCES} from '../odata/model.js'
import {ReleaseLifecycle} from '../releases/lifecycle.js'
import {TOKEN_ISSUER} from './managed-registry.js'
import type {RegistryTokenKey} from './token-key.js'

/** How long a registry token is good for; the engine asks again when it runs out mid-transfer. */
export const REGISTRY_TOKEN_LIFETIME_SECONDS = 15 * 60

/** The user name the builder presents with its build's credential. */
export const BUILDER_USERNAME = 'flotilla-builder'

/** One entry of a token's `access` claim, and of what a client asks for (`repository:<name>:<actions>`). */
export interface RepositoryAccess {
  type: 'repository'
  name: string
  actions: string[]
}

/** Who asks for a registry token: an actor of the API, or the builder with the credential of one release's build. */
export type RegistryPrincipal = Actor | {kind: 'build'; releaseId: number}

const REPOSITORY_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/

/**
 * The repository scopes of a token request (`scope` may repeat, and a value may hold several, space-separated).
 * Anything else (catalog scopes, malformed names) is dropped: it is simply never granted.
 */
export function parseScopes(raw: unknown): RepositoryAccess[] {
  const values = (Array.isArray(raw) ? raw : [raw]).filter((value): value is string => typeof value === 'string').flatMap((value) => value.split(' '))
  const scopes: RepositoryAccess[] = []
  for (const value of values) {
    const match = /^repository:([^:]+):([a-z*,]*)$/.exec(value)
    if (match && REPOSITORY_NAME.test(match[1]) && match[1].length <= 255) scopes.push({type: 'repository', name: match[1], actions: [...new Set(match[2].split(',').filter(Boolean))]})
  }

  return scopes
}

/** What each kind of principal may ever do to a repository it reaches; the rows decide which repositories those are. */
function allowedActions(principal: RegistryPrincipal): Set<string> {
  if (principal.kind === 'user' || principal.kind === 'build') return new Set(['pull', 'push'])
  if (principal.kind === 'device') return new Set(['pull'])
  return new Set()
}

/**
 * Whether the principal reaches the image stored at this location: a user, the images of their fleets' services
 * (for `deploy`, through the one authorization module); a device, the images of its fleet's successful releases
 * (what it may be told to run); a build, the images of its own release.
 */
async function reachesImage(db: Db, principal: RegistryPrincipal, location: string): Promise<boolean> {
  const image = db.selectFrom('image as reached_image').select('reached_image.id').where('reached_image.is_stored_at__image_location', '=', location)
  const inRelease = image.innerJoin('image__is_part_of__release as part', 'part.image', 'reached_image.id').innerJoin('release', 'release.id', 'part.is_part_of__release')
  let found
  if (principal.kind === 'user') found = await image.where(sql<boolean>`${visibleRows(principal, RESOURCES.image, 'reached_image')}`).executeTakeFirst()
  else if (principal.kind === 'device') found = await inRelease.where('release.belongs_to__application', '=', principal.applicationId).where('release.status', '=', 'success').executeTakeFirst()
  else if (principal.kind === 'build') found = await inRelease.where('release.id', '=', principal.releaseId).executeTakeFirst()
  return found !== undefined
}

/**
 * The part of the requested access the principal may have on this registry: each repository it reaches, with
 * the requested actions its kind may take; every other scope is left out (granted empty).
 */
export async function grantedAccess(db: Db, registry: string, principal: RegistryPrincipal, requested: RepositoryAccess[]): Promise<RepositoryAccess[]> {
  const allowed = allowedActions(principal)
  const granted: RepositoryAccess[] = []
  for (const scope of requested) {
    const actions = scope.actions.filter((action) => allowed.has(action))
    if (actions.length > 0 && (await reachesImage(db, principal, `${registry}/${scope.name}`))) granted.push({type: 'repository', name: scope.name, actions})
  }

  return granted
}

export interface RegistryTokenAnswer {
  token: string
  access_token: string
  expires_in: number
  issued_at: string
}

/** A token the registry `service` accepts for `access`, signed with the server's registry key (ES256, `kid` = its libtrust id). */
export async function signRegistryToken(key: RegistryTokenKey, claims: {service: string; subject: string; access: RepositoryAccess[]}): Promise<RegistryTokenAnswer> {
  const issuedAt = Math.floor(Date.now() / 1000)
  const token = await new SignJWT({access: claims.access})
    .setProtectedHeader({alg: 'ES256', typ: 'JWT', kid: key.keyId})
    .setIssuer(TOKEN_ISSUER)
    .setSubject(claims.subject)
    .setAudience(claims.service)
    .setIssuedAt(issuedAt)
    .setNotBefore(issuedAt)
    .setExpirationTime(issuedAt + REGISTRY_TOKEN_LIFETIME_SECONDS)
    .setJti(randomBytes(16).toString('hex'))
    .sign(key.privateKey)
  return {token, access_token: token, expires_in: REGISTRY_TOKEN_LIFETIME_SECONDS, issued_at: new Date(issuedAt * 1000).toISOString()}
}

/** How long a build's credential can be used at most, however long the build runs. */
const BUILD_CREDENTIAL_LIFETIME_MS = 24 * 3600 * 1000

/**
 * The credentials the builder pushes one release's images with: made when the build starts, good for that
 * release's repositories only while its release is still being built (status `running`) and never past a day,
 * and refused by this instance as soon as it is revoked. They are signed, not stored, so that any instance on the
 * database honours them: the registry sends the engine for its token to the server's public URL, which a load
 * balancer may route to another instance than the one building.
 */
export class BuildCredentials {
  private readonly key: Buffer
  private readonly revoked = new Set<string>()

  constructor(
    private readonly db: Db,
    sessionSecret: Uint8Array,
  ) {
    this.key = Buffer.from(hkdfSync('sha256', sessionSecret, Buffer.alloc(0), 'flotilla build credentials', 32))
  }

  /** A credential for one build's pushes to `registry`; `revoke()` it when the build ends, whatever its outcome. */
  issue(releaseId: number, registry: string, now = Date.now()): {credentials: RegistryCredentials; revoke(): void} {
    const claims = `${releaseId}.${randomBytes(12).toString('base64url')}.${now + BUILD_CREDENTIAL_LIFETIME_MS}`
    const password = `${claims}.${this.signatureOf(claims)}`
    return {credentials: {username: BUILDER_USERNAME, password, serveraddress: registry}, revoke: () => this.revoked.add(password)}
  }

  /** The release a credential is for while its build runs, else undefined. */
  async releaseOf(credential: string, now = Date.now()): Promise<number | undefined> {
    const match = /^(\d{1,15})\.[\w-]{16}\.(\d{1,15})\.([\w-]{43})$/.exec(credential)
    if (!match || this.revoked.has(credential)) return undefined
    const [, releaseText, expiresText, signature] = match
    const expected = Buffer.from(this.signatureOf(credential.slice(0, credential.lastIndexOf('.'))))
    if (!timingSafeEqual(Buffer.from(signature), expected) || Number(expiresText) <= now) return undefined
    const releaseId = Number(releaseText)
    return (await new ReleaseLifecycle(this.db).statusOf(releaseId)) === 'running' ? releaseId : undefined
  }

  private signatureOf(claims: string): string {
    return createHmac('sha256', this.key).update(claims).digest('base64url')
  }
}

/** What a server with a registry needs to hand out its tokens: its signing key and the running builds' credentials. */
export interface RegistryAuthority {
  key: RegistryTokenKey
  builds: BuildCredentials
}
