import {strict as assert} from 'node:assert'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {sql} from 'kysely'

import {type Db, openDatabase} from '../../../../src/server/db/database.js'
import {MIGRATIONS} from '../../../../src/server/db/migrations.js'
import {countUsers, createUser} from '../../../../src/server/db/users.js'
import {now} from '../../../../src/server/db/values.js'
import {HttpError} from '../../../../src/server/http-errors.js'
import {ensureAdmin} from '../../../../src/server/bootstrap.js'
import {closeTestDatabase, DIALECTS, openTestDatabase, testPostgres} from '../../../helpers/postgres.js'

async function insertFleet(db: Db, organization: number): Promise<number> {
  const actor = await db.insertInto('actor').values({kind: 'application'}).returning('id').executeTakeFirstOrThrow()
  const deviceType = await db.selectFrom('device_type').select('id').where('slug', '=', 'raspberrypi4-64').executeTakeFirstOrThrow()
  const values = {created_at: now(), app_name: 'fleet', slug: 'ada/fleet', uuid: 'f'.repeat(32), is_for__device_type: deviceType.id, organization, is_of__class: 'fleet', actor: actor.id}
  const fleet = await db.insertInto('application').values({...values, should_track_latest_release: 1, is_host: 0, is_archived: 0, is_public: 0}).returning('id').executeTakeFirstOrThrow()
  return fleet.id
}

let devices = 0
async function insertDevice(db: Db, fleet: number, fields: {device_name?: string} = {}): Promise<number> {
  const actor = await db.insertInto('actor').values({kind: 'device'}).returning('id').executeTakeFirstOrThrow()
  const application = await db.selectFrom('application').select('is_for__device_type').where('id', '=', fleet).executeTakeFirstOrThrow()
  const device = await db
    .insertInto('device')
    .values({created_at: now(), uuid: String(++devices).padStart(32, '0'), device_name: fields.device_name ?? 'device', is_of__device_type: application.is_for__device_type, belongs_to__application: fleet, actor: actor.id, is_online: 0, api_heartbeat_state: 'unknown', is_undervolted: 0, is_web_accessible: 0})
    .returning('id')
    .executeTakeFirstOrThrow()
  return device.id
}

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

  it('migrates an empty PostgreSQL database once, seeding device types, as it does SQLite', async () => {
    const url = await (await testPostgres()).createDatabase({empty: true})
    const db = await openDatabase({url})
    await db.destroy()
    const again = await openDatabase({url})
    const types = await again.selectFrom('device_type').select('slug').execute()
    assert.equal(types.length, new Set(types.map((type) => type.slug)).size)
    assert.ok(types.some((type) => type.slug === 'jetson-orin-nano-devkit-nvme'))
    const migrations = await sql<{count: number}>`select count(*) as count from kysely_migration`.execute(again)
    assert.equal(migrations.rows[0].count, Object.keys(MIGRATIONS).length)
    await again.destroy()
    await (await testPostgres()).dropDatabase(url)
  })

  for (const dialect of DIALECTS) {
    describe(`on ${dialect}`, () => {
    it('creates the admin only on an empty database, generating a password when none is given', async () => {
      const db = await openTestDatabase(dialect)
      const created = await ensureAdmin(db, {email: 'root@example.com'})
      assert.equal(created?.username, 'admin')
      assert.equal(created?.generatedPassword?.length, 20)
      assert.equal(await ensureAdmin(db, {email: 'other@example.com', password: 'whatever1'}), undefined)
      assert.equal(await countUsers(db), 1)
      const organization = await db.selectFrom('organization').selectAll().executeTakeFirstOrThrow()
      assert.deepEqual([organization.handle, organization.name], ['admin', 'admin'])
      await closeTestDatabase(db)
    })

    it('refuses a second user of the same name or email and invalid input, writing nothing', async () => {
      const db = await openTestDatabase(dialect)
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
      await closeTestDatabase(db)
    })

    it('assigns ids that are never reused, keeps 0/1 flags, 64-bit numbers and counts as numbers', async () => {
      const db = await openTestDatabase(dialect)
      try {
        const first = await db.insertInto('actor').values({kind: 'user'}).returning('id').executeTakeFirstOrThrow()
        await db.deleteFrom('actor').where('id', '=', first.id).execute()
        const second = await db.insertInto('actor').values({kind: 'user'}).returning('id').executeTakeFirstOrThrow()
        assert.ok(second.id > first.id, `id ${first.id} was given again`)
        const admin = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
        const fleet = await insertFleet(db, admin.organizationId)
        const device = await insertDevice(db, fleet)
        const timestamp = Date.UTC(2030, 0, 1)
        await db.insertInto('device_log').values({id: 2 ** 40, device, created_at: timestamp, timestamp, message: 'hello', is_system: 1, is_std_err: 0, service_id: null}).execute()
        const line = await db.selectFrom('device_log').selectAll().executeTakeFirstOrThrow()
        assert.deepEqual([line.id, line.timestamp, line.is_system, line.is_std_err], [2 ** 40, timestamp, 1, 0])
        const counted = await sql<{count: number; total: number}>`select count(*) as count, sum(timestamp) as total from device_log`.execute(db)
        assert.deepEqual(counted.rows[0], {count: 1, total: timestamp})
      } finally {
        await closeTestDatabase(db)
      }
    })

    it('compares and sorts text byte by byte, case-sensitive LIKE included, whatever the server\'s locale', async () => {
      const db = await openTestDatabase(dialect)
      try {
        const admin = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
        const fleet = await insertFleet(db, admin.organizationId)
        for (const name of ['b-device', 'B-device', 'a-device', 'A-device']) await insertDevice(db, fleet, {device_name: name})
        const names = await db.selectFrom('device').select('device_name').orderBy('device_name').execute()
        assert.deepEqual(names.map((row) => row.device_name), ['A-device', 'B-device', 'a-device', 'b-device'])
        const like = await db.selectFrom('device').select('device_name').where(sql<boolean>`device_name like ${'a%'}`).execute()
        assert.deepEqual(like.map((row) => row.device_name), ['a-device'])
      } finally {
        await closeTestDatabase(db)
      }
    })

    it('cascades or clears references on delete as the schema says', async () => {
      const db = await openTestDatabase(dialect)
      try {
        const admin = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
        const fleet = await insertFleet(db, admin.organizationId)
        const device = await insertDevice(db, fleet)
        const release = await db
          .insertInto('release')
          .values({created_at: now(), belongs_to__application: fleet, commit: 'abc', composition: '{}', status: 'success', source: 'cloud', is_final: 1, semver: '0.0.0', is_invalidated: 0})
          .returning('id')
          .executeTakeFirstOrThrow()
        await db.updateTable('application').set({should_be_running__release: release.id}).where('id', '=', fleet).execute()
        await db.updateTable('device').set({is_pinned_on__release: release.id}).where('id', '=', device).execute()
        await db.deleteFrom('release').where('id', '=', release.id).execute()
        const pins = await db.selectFrom('device').innerJoin('application', 'application.id', 'device.belongs_to__application').select(['device.is_pinned_on__release', 'application.should_be_running__release']).executeTakeFirstOrThrow()
        assert.deepEqual(pins, {is_pinned_on__release: null, should_be_running__release: null})
        await db.deleteFrom('application').where('id', '=', fleet).execute()
        assert.deepEqual(await db.selectFrom('device').select('id').execute(), [])
      } finally {
        await closeTestDatabase(db)
      }
    })
    })
  }
})
