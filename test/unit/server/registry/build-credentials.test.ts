import {strict as assert} from 'node:assert'
import {randomBytes} from 'node:crypto'

import type {Kysely} from 'kysely'

import type {Actor} from '../../../../src/server/auth/actor.js'
import type {Db} from '../../../../src/server/db/database.js'
import {createUser} from '../../../../src/server/db/users.js'
import {parseODataUrl} from '../../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../../src/server/odata/write.js'
import {BuildCredentials} from '../../../../src/server/registry/tokens.js'
import {closeTestDatabase, openTestDatabase} from '../../../helpers/postgres.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
describe("build credentials (the builder's pushes to the registry)", () => {
  let db: Db
  let releaseId: number
  const secret = randomBytes(32)

  before(async () => {
    db = await openTestDatabase('sqlite')
    const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
    const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
    const writer = new ODataWriter(db as unknown as Kysely<any>, owner)
    const create = (resource: string, values: Record<string, unknown>) => writer.create(parseODataUrl(`/${resource}`).resource, values)
    const fleet = await create('application', {app_name: 'sensors', organization: user.organizationId, is_for__device_type: 1})
    releaseId = (await create('release', {belongs_to__application: fleet.id, status: 'running'})).id as number
  })

  after(async () => closeTestDatabase(db))

  it("are honoured by another instance sharing the database's secret, for their release while it builds", async () => {
    const {credentials} = new BuildCredentials(db, secret).issue(releaseId, 'registry.local:5000')
    assert.equal(await new BuildCredentials(db, secret).releaseOf(credentials.password), releaseId)
  })

  it('are refused once revoked, once expired, once their release has stopped building, and when forged', async () => {
    const here = new BuildCredentials(db, secret)
    const issued = here.issue(releaseId, 'registry.local:5000')
    issued.revoke()
    assert.equal(await here.releaseOf(issued.credentials.password), undefined, 'revoked')

    const {password} = here.issue(releaseId, 'registry.local:5000').credentials
    assert.equal(await here.releaseOf(password, Date.now() + 25 * 3600 * 1000), undefined, 'expired')
    assert.equal(await new BuildCredentials(db, randomBytes(32)).releaseOf(password), undefined, 'another server')
    const [release, nonce, expires, signature] = password.split('.')
    for (const forged of [`${release === '1' ? 2 : 1}.${nonce}.${expires}.${signature}`, `${release}.${nonce}.${Number(expires) + 1000}.${signature}`, `${release}.${nonce}.${expires}`, '', 'x'.repeat(500)]) {
      assert.equal(await here.releaseOf(forged), undefined, forged)
    }

    await db.updateTable('release').set({status: 'success'}).where('id', '=', releaseId).execute()
    try {
      assert.equal(await here.releaseOf(password), undefined, 'finished')
    } finally {
      await db.updateTable('release').set({status: 'running'}).where('id', '=', releaseId).execute()
    }
  })
})
