import {strict as assert} from 'node:assert'
import {existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import type {Kysely} from 'kysely'

import {createServer} from '../../../src/server/app.js'
import type {Actor} from '../../../src/server/auth/actor.js'
import {openDatabase} from '../../../src/server/db/database.js'
import {createUser} from '../../../src/server/db/users.js'
import {parseODataUrl} from '../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../src/server/odata/write.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
describe('release asset files an older server kept in its data dir', () => {
  let dataDir: string

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-assets-'))
  })

  afterEach(() => rmSync(dataDir, {recursive: true, force: true}))

  it('are moved into the database at start, served as before, and the files of deleted rows are removed', async () => {
    const db = await openDatabase({dataDir})
    const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
    const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
    const writer = new ODataWriter(db as unknown as Kysely<any>, owner)
    const fleet = await writer.create(parseODataUrl('/application').resource, {app_name: 'old', organization: user.organizationId, is_for__device_type: 1})
    const release = await writer.create(parseODataUrl('/release').resource, {belongs_to__application: fleet.id})
    const {id} = await db.insertInto('release_asset').values({created_at: new Date().toISOString(), release: release.id as number, asset_key: 'notes', asset: null}).returning('id').executeTakeFirstOrThrow()
    const href = `http://127.0.0.1:1/release-asset/${id}?token=${'t'.repeat(32)}`
    await db.updateTable('release_asset').set({asset: JSON.stringify({href, filename: 'notes.txt', content_type: 'text/plain', size: 9})}).where('id', '=', id).execute()
    await db.destroy()
    const folder = path.join(dataDir, 'release-assets')
    mkdirSync(folder)
    writeFileSync(path.join(folder, String(id)), 'old notes')
    writeFileSync(path.join(folder, String(id + 1)), 'of a deleted row')

    const server = await createServer({dataDir, logger: {level: 'silent'}})
    try {
      await server.app.ready()
      const downloaded = await server.app.inject({method: 'GET', url: `/release-asset/${id}?token=${'t'.repeat(32)}`})
      assert.deepEqual([downloaded.statusCode, downloaded.body], [200, 'old notes'])
      assert.ok(!existsSync(folder), 'the files are gone from the data dir')
    } finally {
      await server.close()
    }
  })
})
