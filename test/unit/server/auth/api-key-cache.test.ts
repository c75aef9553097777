import {strict as assert} from 'node:assert'

import {API_KEY_CACHE_MS, ApiKeyCache} from '../../../../src/server/auth/api-key-cache.js'
import {createApiKey} from '../../../../src/server/auth/api-keys.js'
import {type Db, openDatabase} from '../../../../src/server/db/database.js'
import {createUser} from '../../../../src/server/db/users.js'

describe('API-key cache', () => {
  let db: Db
  let key: string
  const clock = {time: 1_000_000, draw: 0, now: () => clock.time, random: () => clock.draw}

  beforeEach(async () => {
    db = await openDatabase(':memory:')
    const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
    key = await createApiKey(db, {actorId: user.actorId, kind: 'named-user-api-key'})
    clock.time = 1_000_000
  })

  afterEach(() => db.destroy())

  /** The key's row goes without the server announcing it (by hand): only the cache's own time can notice. */
  const deleteUnannounced = () => db.deleteFrom('api_key').execute()

  it('keeps a key for at least half its lifetime without reading the database again', async () => {
    clock.draw = 0
    const cache = new ApiKeyCache(db, new Uint8Array(32), clock)
    assert.equal((await cache.resolve(key))?.kind, 'user')
    await deleteUnannounced()
    clock.time += API_KEY_CACHE_MS / 2 - 1
    assert.equal((await cache.resolve(key))?.kind, 'user', 'kept')
    clock.time += 2
    assert.equal(await cache.resolve(key), undefined, 'read again once its drawn time is over')
  })

  it('spreads the keys learnt together over the second half of the lifetime, so they are not all read again at once', async () => {
    clock.draw = 0.999
    const cache = new ApiKeyCache(db, new Uint8Array(32), clock)
    await cache.resolve(key)
    await deleteUnannounced()
    clock.time += API_KEY_CACHE_MS * 0.99
    assert.equal((await cache.resolve(key))?.kind, 'user', 'a late draw keeps the key almost its whole lifetime')
    clock.time += API_KEY_CACHE_MS * 0.01
    assert.equal(await cache.resolve(key), undefined, 'never past the lifetime')
  })

  it('forgets every key at once when cleared (a revocation)', async () => {
    const cache = new ApiKeyCache(db, new Uint8Array(32), clock)
    await cache.resolve(key)
    await deleteUnannounced()
    cache.clear()
    assert.equal(await cache.resolve(key), undefined)
  })
})
