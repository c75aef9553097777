import type {FastifyRequest} from 'fastify'

import {type Actor, credentialOf, GUEST} from './auth/actor.js'
import type {ApiKeyCache} from './auth/api-key-cache.js'
import type {LoginRateLimiter} from './auth/rate-limit.js'
import type {Db} from './db/database.js'
import type {Heartbeats} from './heartbeats.js'
import {unauthorized} from './http-errors.js'
import type {RegistryAuthority} from './registry/tokens.js'
import type {TargetStates} from './target-states.js'

/** What every route of one server shares. */
export interface ServerContext {
  db: Db
  /** Signs and verifies session JWTs. */
  secret: Uint8Array
  loginLimiter: LoginRateLimiter
  /** `host:port` of the Docker registry images are pushed to, or null when images stay in the local engine. */
  registry: string | null
  /** Signs the registry's tokens; null without a registry. */
  registryAuthority: RegistryAuthority | null
  /**
   * The URL clients and devices reach this server at (`--public-url`, else the listening URL): every endpoint the
   * server hands out (well-known document, config.json) is made from it, never from a request's Host header.
   */
  publicUrl: string
  /** The SSH gateway's port: as configured, then as bound. */
  sshPort: number
  /** The SSH port announced to clients and devices (a load balancer's) when it is not {@link sshPort}. */
  publicSshPort?: number
  /** The gateway's public host key (`ssh-ed25519 AAAA…`), announced so clients can pin it. */
  sshHostKey: string
  version: string
  /** This server process among those sharing its database (gateway/instance-registry.ts): random, new at each start. */
  instanceId: string
  /** Resolves credentials, keeping API keys' actors briefly; cleared by the two calls below. */
  apiKeys: ApiKeyCache
  /** Devices' target states as served, kept until {@link targetsMaybeChanged}. */
  targetStates: TargetStates
  /** Devices' heartbeats, written in batches. */
  heartbeats: Heartbeats
  /**
   * Called after any write that may change devices' target states (every pine write, a release promoted): kept
   * targets, API keys' actors and reports are dropped, and linked devices whose target changed are told at once.
   */
  targetsMaybeChanged(): void
  /** Called after a deletion that may have taken device keys with it (a revocation, a removed device): links opened with them close at once. */
  keysMaybeRevoked(): Promise<void>
}

const actors = new WeakMap<FastifyRequest, Promise<Actor>>()

/**
 * The actor of a request: its credential's owner, or the guest when it brings none. A credential that is
 * unknown, expired or revoked is refused (401) rather than treated as a guest.
 */
export function actorOf(context: ServerContext, request: FastifyRequest): Promise<Actor> {
  let actor = actors.get(request)
  if (!actor) {
    const credential = credentialOf(request.headers, request.query)
    actor = credential
      ? context.apiKeys.resolve(credential).then((found) => {
          if (!found) throw unauthorized()
          return found
        })
      : Promise.resolve(GUEST)
    actors.set(request, actor)
  }

  return actor
}

/** The actor of a request that must bring credentials. */
export async function authenticatedActor(context: ServerContext, request: FastifyRequest): Promise<Exclude<Actor, {kind: 'guest'}>> {
  const actor = await actorOf(context, request)
  if (actor.kind === 'guest') throw unauthorized()
  return actor
}

export async function userActor(context: ServerContext, request: FastifyRequest): Promise<Extract<Actor, {kind: 'user'}>> {
  const actor = await authenticatedActor(context, request)
  if (actor.kind !== 'user') throw unauthorized()
  return actor
}
