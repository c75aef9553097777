import {createHash} from 'node:crypto'

import type {Db} from '../db/database.js'

/**
 * Failed logins counted per IP and username in a sliding window: past the limit, logins are refused (429) until the
 * oldest failure leaves the window, whether or not the password is right. The failures are kept in the database
 * (`login_failure`, by a hash of the key), so that several server instances behind a balancer count them together
 * rather than each allowing the limit.
 */
export class LoginRateLimiter {
  constructor(
    private readonly db: Db,
    private readonly maxFailures = 10,
    private readonly windowMs = 5 * 60_000,
  ) {}

  /** Seconds to wait before trying again, or 0 when a login may be tried now. */
  async retryAfterSeconds(key: string, now = Date.now()): Promise<number> {
    const recent = await this.db
      .selectFrom('login_failure')
      .select('at')
      .where('key_hash', '=', hashOf(key))
      .where('at', '>', now - this.windowMs)
      .orderBy('at', 'desc')
      .limit(this.maxFailures)
      .execute()
    if (recent.length < this.maxFailures) return 0
    const oldestCounted = Number(recent.at(-1)!.at)
    return Math.max(1, Math.ceil((oldestCounted + this.windowMs - now) / 1000))
  }

  async recordFailure(key: string, now = Date.now()): Promise<void> {
    const keyHash = hashOf(key)
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('login_failure').where('key_hash', '=', keyHash).where('at', '<=', now - this.windowMs).execute()
      await trx.insertInto('login_failure').values({key_hash: keyHash, at: now}).execute()
    })
  }

  async reset(key: string): Promise<void> {
    await this.db.deleteFrom('login_failure').where('key_hash', '=', hashOf(key)).execute()
  }
}

/** The key (an IP and a user name) is not kept as such. */
function hashOf(key: string): string {
  return createHash('sha256').update(key).digest('hex')
}
