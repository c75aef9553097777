import {strict as assert} from 'node:assert'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {sql} from 'kysely'

import {openDatabase} from '../../../../src/server/db/database.js'
import {countUsers, createUser} from '../../../../src/server/db/users.js'
import {HttpError} from '../../../../src/server/http-errors.js'
import {ensureAdmin} from '../../../../src/server/bootstrap.js'

describe('the server database', () => {
  let dataDir: string

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-db-'))
  })

  afterEach(() => rmSync(dataDir, {recursive: true, force: true}))

  it('keeps the cause of a failed transaction that SQLite already ended (as it does on a full disk)', async () => {
    const db = await openDatabase(':memory:')
    try {
      const full = Object.assign(new Error('database or disk is full'), {code: 'SQLITE_FULL'})
      await assert.rejects(
        db.transaction().execute(async (trx) => {
          await sql`rollback`.execute(trx)
          throw full
        }),
        (error: unknown) => error === full,
      )
      assert.equal((await sql<{one: number}>`select 1 as one`.execute(db)).rows[0].one, 1, 'the connection is still usable')
    } finally {
      await db.destroy()
    }
  })

  it('lives in <data-dir>/flotilla.db in WAL mode, migrated once and seeded with device types', async () => {
    const db = await openDatabase({dataDir})
    assert.ok(existsSync(path.join(dataDir, 'flotilla.db')))
    const mode = await sql<{journal_mode: string}>`pragma journal_mode`.execute(db)
    assert.equal(mode.rows[0].journal_mode, 'wal')
    await db.destroy()
    const again = await openDatabase({dataDir})
    const types = await again.selectFrom('device_type').select('slug').execute()
    assert.equal(types.length, new Set(types.map((type) => type.slug)).size)
    assert.ok(types.some((type) => type.slug === 'jetson-orin-nano-devkit-nvme'))
    await again.destroy()
  })

  it('creates the admin only on an empty database, generating a password when none is given', async () => {
    const db = await openDatabase(':memory:')
    const created = await ensureAdmin(db, {email: 'root@example.com'})
    assert.equal(created?.username, 'admin')
    assert.equal(created?.generatedPassword?.length, 20)
    assert.equal(await ensureAdmin(db, {email: 'other@example.com', password: 'whatever1'}), undefined)
    assert.equal(await countUsers(db), 1)
    const organization = await db.selectFrom('organization').selectAll().executeTakeFirstOrThrow()
    assert.deepEqual([organization.handle, organization.name], ['admin', 'admin'])
    await db.destroy()
  })

  it('refuses a second user of the same name or email and invalid input, writing nothing', async () => {
    const db = await openDatabase(':memory:')
    await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
    for (const user of [
      {email: 'ADA@example.com', username: 'other', password: 'password1'},
      {email: 'new@example.com', username: 'ADA', password: 'password1'},
      {email: 'new@example.com', username: 'bad name', password: 'password1'},
      {email: 'not-an-email', username: 'newone', password: 'password1'},
      {email: 'new@example.com', username: 'newone', password: 'short'},
    ]) {
      await assert.rejects(createUser(db, user), (error: HttpError) => error.statusCode === 409 || error.statusCode === 400)
    }

    assert.equal(await countUsers(db), 1)
    assert.equal((await db.selectFrom('actor').selectAll().execute()).length, 1)
    await db.destroy()
  })
})
