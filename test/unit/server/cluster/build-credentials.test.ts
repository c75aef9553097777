import {strict as assert} from 'node:assert'

import type {Kysely} from 'kysely'

import type {Actor} from '../../../../src/server/auth/actor.js'
import {type Db, openDatabase} from '../../../../src/server/db/database.js'
import {createUser} from '../../../../src/server/db/users.js'
import {parseODataUrl} from '../../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../../src/server/odata/write.js'
import {BuildCredentials} from '../../../../src/server/registry/tokens.js'
import {DIALECTS} from '../../../helpers/postgres.js'
import {sharedLocation} from './shared-database.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
for (const dialect of DIALECTS) {
  describe(`build registry credentials shared by two instances on ${dialect}`, () => {
    let shared: Awaited<ReturnType<typeof sharedLocation>>
    let dbA: Db
    let dbB: Db
    let releaseId: number

    before(async () => {
      shared = await sharedLocation(dialect)
      dbA = await openDatabase(shared.location)
      dbB = await openDatabase(shared.location)
      const user = await createUser(dbA, {email: 'ada@example.com', username: 'ada', password: 'password1'})
      const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
      const writer = new ODataWriter(dbA as unknown as Kysely<any>, owner)
      const fleet = await writer.create(parseODataUrl('/application').resource, {app_name: 'builds', organization: user.organizationId, is_for__device_type: 1})
      releaseId = (await writer.create(parseODataUrl('/release').resource, {belongs_to__application: fleet.id, commit: 'abcdef0123456789abcdef0123456789', status: 'running', composition: {}})).id as number
    })

    after(async () => {
      await dbA.destroy()
      await dbB.destroy()
      await shared.remove()
    })

    it('accepts on one instance the credential of a build running on the other, until it is revoked or the build ends', async () => {
      const issued = await new BuildCredentials(dbA).issue(releaseId, '127.0.0.1:5000')
      const other = new BuildCredentials(dbB)
      assert.equal(await other.releaseOf(issued.credentials.password), releaseId)
      assert.equal(await other.releaseOf(`${issued.credentials.password}x`), undefined, 'a wrong secret')
      assert.equal(await other.releaseOf('not-a-credential'), undefined)
      await dbA.updateTable('release').set({status: 'interrupted'}).where('id', '=', releaseId).execute()
      assert.equal(await other.releaseOf(issued.credentials.password), undefined, 'the build ended without revoking it (its instance died)')
      await dbA.updateTable('release').set({status: 'running'}).where('id', '=', releaseId).execute()
      await issued.revoke()
      assert.equal(await other.releaseOf(issued.credentials.password), undefined, 'revoked')
    })
  })
}
