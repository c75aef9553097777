import type {Db} from '../db/database.js'
import {type Actor, resolveActor, resolveApiKey} from './actor.js'
import {hashApiKey} from './api-keys.js'
import {looksLikeJwt} from './tokens.js'

/**
 * How long a key's actor is trusted without asking the database again, at most. Every revocation the server makes
 * clears the cache at once (here and, through the cluster bus, on every instance), so this bounds only what nothing
 * announces: a row changed by hand. Each key is kept for a time drawn between half of it and all of it: keys learnt
 * together (a fleet polling after a restart or a pine write) would otherwise all be read again in the same few
 * seconds, a burst that was the worst pause at 20,000 devices.
 */
export const API_KEY_CACHE_MS = 5 * 60_000
/** Past this many keys kept, the cache starts over rather than grow without bound. */
const MAX_KEYS = 100_000

/**
 * Resolves credentials as {@link resolveActor} does, keeping what an API key stands for a while (by the key's hash,
 * never past its expiry): every device poll brings its key. {@link clear} drops everything at once; the server calls
 * it after any deletion that may revoke a key and after any write through pine (which may move a device or rename
 * a fleet an actor carries), so a revoked key is refused on the very next request. Session tokens are not kept: their
 * check is a signature and one row, and a password changed from another process ends them at once.
 */
export class ApiKeyCache {
  private readonly keys = new Map<string, {actor: Actor; until: number}>()
  private generation = 0

  constructor(
    private readonly db: Db,
    private readonly secret: Uint8Array,
    private readonly clock: {now(): number; random(): number} = {now: Date.now, random: Math.random},
  ) {}

  async resolve(credential: string): Promise<Actor | undefined> {
    if (looksLikeJwt(credential)) return resolveActor(this.db, this.secret, credential)
    const hash = hashApiKey(credential)
    const kept = this.keys.get(hash)
    if (kept && kept.until > this.clock.now()) return kept.actor
    const generation = this.generation
    const found = await resolveApiKey(this.db, credential)
    if (!found) {
      this.keys.delete(hash)
      return undefined
    }

    // A revocation while the key was read must not be undone by keeping what was read before it.
    if (generation === this.generation) {
      if (this.keys.size >= MAX_KEYS) this.keys.clear()
      const keptFor = API_KEY_CACHE_MS * (0.5 + this.clock.random() / 2)
      this.keys.set(hash, {actor: found.actor, until: Math.min(this.clock.now() + keptFor, found.expiresAt ?? Number.POSITIVE_INFINITY)})
    }

    return found.actor
  }

  clear(): void {
    this.generation++
    this.keys.clear()
  }
}
