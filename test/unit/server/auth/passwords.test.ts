import {strict as assert} from 'node:assert'

import {generatePassword, hashPassword, randomAlphanumerics, verifyPassword} from '../../../../src/server/auth/passwords.js'
import {LoginRateLimiter} from '../../../../src/server/auth/rate-limit.js'
import type {Db} from '../../../../src/server/db/database.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../../helpers/postgres.js'

describe('passwords', () => {
  it('hashes with a salt of its own and verifies only the right password', async () => {
    const first = await hashPassword('correct horse')
    const second = await hashPassword('correct horse')
    assert.notEqual(first, second)
    assert.match(first, /^scrypt\$16384\$8\$1\$/)
    assert.equal(await verifyPassword('correct horse', first), true)
    assert.equal(await verifyPassword('correct horse!', first), false)
    assert.equal(await verifyPassword('anything', null), false)
    assert.equal(await verifyPassword('anything', 'plain-text'), false)
  })

  it('generates random keys and passwords of the asked length and alphabet', () => {
    assert.match(randomAlphanumerics(32), /^[A-Za-z0-9]{32}$/)
    assert.notEqual(randomAlphanumerics(32), randomAlphanumerics(32))
    assert.equal(generatePassword().length, 20)
    assert.doesNotMatch(generatePassword(200), /[0O1lI]/)
  })
})

for (const dialect of DIALECTS) {
  describe(`LoginRateLimiter on ${dialect}`, () => {
    let db: Db

    before(async () => {
      db = await openTestDatabase(dialect)
    })

    after(async () => {
      await closeTestDatabase(db)
    })

    it('refuses after the limit of failures until the window moves on, per key', async () => {
      const limiter = new LoginRateLimiter(db, 3, 60_000)
      const start = 1_000_000
      for (let failure = 0; failure < 3; failure++) await limiter.recordFailure('ip|ada', start + failure)
      assert.equal(await limiter.retryAfterSeconds('ip|ada', start + 10), 60)
      assert.equal(await limiter.retryAfterSeconds('ip|bob', start + 10), 0)
      assert.equal(await limiter.retryAfterSeconds('ip|ada', start + 60_001), 0)
      await limiter.recordFailure('ip|bob', start)
      await limiter.reset('ip|bob')
      assert.equal(await limiter.retryAfterSeconds('ip|bob', start), 0)
    })

    it('counts the failures of every server instance on the database together', async () => {
      const [a, b] = [new LoginRateLimiter(db, 4, 60_000), new LoginRateLimiter(db, 4, 60_000)]
      const start = 5_000_000
      await a.recordFailure('ip|cy', start)
      await b.recordFailure('ip|cy', start + 1)
      await a.recordFailure('ip|cy', start + 2)
      assert.equal(await b.retryAfterSeconds('ip|cy', start + 3), 0)
      await b.recordFailure('ip|cy', start + 3)
      assert.equal(await a.retryAfterSeconds('ip|cy', start + 4), 60)
    })
  })
}
