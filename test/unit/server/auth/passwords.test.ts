import {strict as assert} from 'node:assert'

import {generatePassword, hashPassword, randomAlphanumerics, verifyPassword} from '../../../../src/server/auth/passwords.js'
import {LoginRateLimiter} from '../../../../src/server/auth/rate-limit.js'

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

describe('LoginRateLimiter', () => {
  it('refuses after the limit of failures until the window moves on, per key', () => {
    const limiter = new LoginRateLimiter(3, 60_000)
    const start = 1_000_000
    for (let failure = 0; failure < 3; failure++) limiter.recordFailure('ip|ada', start + failure)
    assert.equal(limiter.retryAfterSeconds('ip|ada', start + 10), 60)
    assert.equal(limiter.retryAfterSeconds('ip|bob', start + 10), 0)
    assert.equal(limiter.retryAfterSeconds('ip|ada', start + 60_001), 0)
    limiter.recordFailure('ip|bob', start)
    limiter.reset('ip|bob')
    assert.equal(limiter.retryAfterSeconds('ip|bob', start), 0)
  })
})
