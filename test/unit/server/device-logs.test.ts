import {strict as assert} from 'node:assert'

import {gzipSync} from 'node:zlib'

import {type Kysely, sql} from 'kysely'

import type {StoredLogLine} from '../../../src/protocol/log-line.js'
import type {Actor} from '../../../src/server/auth/actor.js'
import {type Db} from '../../../src/server/db/database.js'
import {createUser} from '../../../src/server/db/users.js'
import {DeviceLogStore, logLineOf} from '../../../src/server/device-logs.js'
import {type FlotillaServer, createServer} from '../../../src/server/app.js'
import {createApiKey} from '../../../src/server/auth/api-keys.js'
import {parseODataUrl} from '../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../src/server/odata/write.js'
import type {DialectName} from '../../../src/server/db/dialect.js'
import {isDiskFullError} from '../../../src/server/http-errors.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../helpers/postgres.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
const line = (message: string) => ({message, timestamp: 1, isSystem: false, isStdErr: false})

/** Makes writes to device_log fail as on a full disk (SQLite: no page left; PostgreSQL: its disk_full error); resolves with the undoing. */
async function fillDisk(db: Db, dialect: DialectName): Promise<() => Promise<void>> {
  if (dialect === 'sqlite') {
    const {pages} = (await sql<{pages: number}>`select page_count as pages from pragma_page_count()`.execute(db)).rows[0]
    await sql.raw(`pragma max_page_count = ${pages}`).execute(db)
    return async () => void (await sql.raw('pragma max_page_count = 1073741823').execute(db))
  }

  await sql.raw(`create function disk_is_full() returns trigger language plpgsql as $$ begin raise exception 'could not extend file' using errcode = 'disk_full'; end $$`).execute(db)
  await sql.raw('create trigger disk_is_full before insert on device_log for each row execute function disk_is_full()').execute(db)
  return async () => void (await sql.raw('drop function disk_is_full cascade').execute(db))
}

for (const dialect of DIALECTS) {
  describe(`DeviceLogStore on ${dialect}`, () => {
    let db: Db
    let devices: number[]

    before(async () => {
      db = await openTestDatabase(dialect)
      const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
      const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
      const writer = new ODataWriter(db as unknown as Kysely<any>, owner)
      const fleet = await writer.create(parseODataUrl('/application').resource, {app_name: 'logs', organization: user.organizationId, is_for__device_type: 1})
      devices = []
      for (let index = 0; index < 2; index++) devices.push((await writer.create(parseODataUrl('/device').resource, {belongs_to__application: fleet.id, is_of__device_type: 1})).id as number)
    })

    after(async () => {
      await closeTestDatabase(db)
    })

    it("publishes a device's lines to its subscribers once they are stored, with increasing ids", async () => {
      const store = new DeviceLogStore(db)
      const seen: StoredLogLine[] = []
      const others: StoredLogLine[] = []
      const unsubscribe = store.subscribe(devices[0], (stored) => {
        seen.push(stored)
        assert.equal(stored.id === undefined, false)
      })
      store.subscribe(devices[1], (stored) => others.push(stored))
      await store.append(devices[0], [line('a'), line('b')])
      assert.deepEqual(seen.map((stored) => stored.message), ['a', 'b'])
      assert.deepEqual((await db.selectFrom('device_log').select('message').where('device', '=', devices[0]).execute()).map((row) => row.message), ['a', 'b'], 'stored when append resolves')
      assert.ok(seen[1].id! > seen[0].id!)
      assert.deepEqual(others, [])
      unsubscribe()
      await store.append(devices[0], [line('c')])
      assert.equal(seen.length, 2)
      const history = await store.history(devices[0], {count: 'all'})
      assert.deepEqual(history.map((stored) => stored.message), ['a', 'b', 'c'])
      assert.deepEqual((await store.history(devices[0], {count: 'all', since: seen[0].id})).map((stored) => stored.message), ['b', 'c'])
      assert.deepEqual((await store.history(devices[0], {count: 1})).map((stored) => stored.message), ['c'])
    })

    it('keeps the retention per device and continues the ids of an earlier store', async () => {
      const store = new DeviceLogStore(db, {retention: 3})
      await store.append(devices[1], [line('1'), line('2'), line('3'), line('4'), line('5')])
      const kept = await store.history(devices[1], {count: 'all'})
      assert.deepEqual(kept.map((stored) => stored.message), ['3', '4', '5'])
      assert.equal((await store.history(devices[0], {count: 'all'})).length, 3)
      assert.ok(kept[0].id! > 3)
    })

    it('accepts only log lines, cutting long messages', () => {
      assert.equal(logLineOf({timestamp: 1}), undefined)
      assert.equal(logLineOf('text'), undefined)
      assert.equal(logLineOf({message: 'x'.repeat(10_001), timestamp: 5, serviceId: 3})?.message, `${'x'.repeat(10_000 - ' [truncated]'.length)} [truncated]`)
      assert.deepEqual(logLineOf({message: 'm', timestamp: 5, isSystem: true, serviceId: 3}), {message: 'm', timestamp: 5, isSystem: true, isStdErr: false, serviceId: 3})
    })

    it('stores and publishes a NUL character of a message as U+FFFD, the one way both databases can keep it', async () => {
      const store = new DeviceLogStore(db)
      const seen: StoredLogLine[] = []
      store.subscribe(devices[1], (stored) => seen.push(stored))
      await store.append(devices[1], [line('binary\0output\0'), line('plain')])
      assert.deepEqual(seen.map((stored) => stored.message), ['binary\uFFFDoutput\uFFFD', 'plain'])
      const rows = await db.selectFrom('device_log').select('message').where('device', '=', devices[1]).orderBy('id').execute()
      assert.deepEqual(rows.map((row) => row.message).slice(-2), ['binary\uFFFDoutput\uFFFD', 'plain'])
    })

    it('rejects an append whose write failed, with the database\'s own cause, and publishes none of its lines', async () => {
      const store = new DeviceLogStore(db)
      const seen: StoredLogLine[] = []
      store.subscribe(devices[0], (stored) => seen.push(stored))
      const restore = await fillDisk(db, dialect)
      try {
        await assert.rejects(store.append(devices[0], Array.from({length: 50}, (_, index) => line(`${index}`.repeat(5000)))), (error: unknown) => isDiskFullError(error))
      } finally {
        await restore()
      }

      assert.equal(seen.length, 0)
      await store.append(devices[0], [line('after')])
      assert.deepEqual(seen.map((stored) => stored.message), ['after'])
    })
  })
}

describe('device log routes on a full disk', () => {
  let server: FlotillaServer
  let uuid: string
  let headers: Record<string, string>

  before(async () => {
    server = await createServer({logger: {level: 'silent'}})
    const user = await createUser(server.db, {email: 'bo@example.com', username: 'bo', password: 'password1'})
    const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'bo', email: 'bo@example.com', via: 'session', authTime: Date.now()}
    const writer = new ODataWriter(server.db as unknown as Kysely<any>, owner)
    const fleet = await writer.create(parseODataUrl('/application').resource, {app_name: 'full', organization: user.organizationId, is_for__device_type: 1})
    const device = await writer.create(parseODataUrl('/device').resource, {belongs_to__application: fleet.id, is_of__device_type: 1})
    uuid = device.uuid as string
    const {actor} = await server.db.selectFrom('device').select('actor').where('uuid', '=', uuid).executeTakeFirstOrThrow()
    headers = {authorization: `Bearer ${await createApiKey(server.db, {actorId: actor, kind: 'device-api-key'})}`}
  })

  after(async () => {
    await server.close()
  })

  async function withFullDisk<T>(run: () => Promise<T>): Promise<T> {
    const {pages} = (await sql<{pages: number}>`select page_count as pages from pragma_page_count()`.execute(server.db)).rows[0]
    await sql.raw(`pragma max_page_count = ${pages}`).execute(server.db)
    try {
      return await run()
    } finally {
      await sql.raw('pragma max_page_count = 1073741823').execute(server.db)
    }
  }

  const lines = (count: number) => Array.from({length: count}, (_, index) => JSON.stringify(line(`line ${index} ${'z'.repeat(5000)}`))).join('\n')

  it('answers 507 "disk full" when the lines cannot be stored, and 201 only once they are', async () => {
    const refused = await withFullDisk(() => server.app.inject({method: 'POST', url: `/device/v2/${uuid}/log-stream`, headers: {...headers, 'content-type': 'application/x-ndjson', 'content-encoding': 'gzip'}, payload: gzipSync(lines(100))}))
    assert.equal(refused.statusCode, 507)
    assert.match(JSON.parse(refused.body) as string, /^disk full/)
    const batch = await withFullDisk(() => server.app.inject({method: 'POST', url: `/device/v2/${uuid}/logs`, headers, payload: Array.from({length: 10}, (_, index) => line(`${index}`.repeat(9000)))}))
    assert.equal(batch.statusCode, 507)
    const deviceId = (await server.db.selectFrom('device').select('id').where('uuid', '=', uuid).executeTakeFirstOrThrow()).id
    assert.equal((await server.db.selectFrom('device_log').select('id').where('device', '=', deviceId).execute()).length, 0)
    const accepted = await server.app.inject({method: 'POST', url: `/device/v2/${uuid}/log-stream`, headers: {...headers, 'content-type': 'application/x-ndjson'}, payload: lines(100)})
    assert.equal(accepted.statusCode, 201)
    assert.equal((await server.db.selectFrom('device_log').select('id').where('device', '=', deviceId).execute()).length, 100, 'every line is stored by the time of the 201')
  })

  it('serves the target state when the heartbeat cannot be written', async () => {
    await sql.raw(`create temp trigger heartbeat_fails before update on device begin select raise(fail, 'database or disk is full'); end`).execute(server.db)
    try {
      const answer = await server.app.inject({method: 'GET', url: `/device/v3/${uuid}/state`, headers})
      assert.equal(answer.statusCode, 200)
      assert.ok((JSON.parse(answer.body) as Record<string, unknown>)[uuid])
    } finally {
      await sql.raw('drop trigger heartbeat_fails').execute(server.db)
    }
  })

  it('[flotilla] stores a numbered log batch once when the device sends it again, and refuses a malformed number', async () => {
    const deviceId = (await server.db.selectFrom('device').select('id').where('uuid', '=', uuid).executeTakeFirstOrThrow()).id
    const stored = async () => (await server.db.selectFrom('device_log').select('message').where('device', '=', deviceId).where('message', 'like', 'batch %').execute()).map((row) => row.message)
    const send = (batch: string, messages: string[]) =>
      server.app.inject({method: 'POST', url: `/device/v2/${uuid}/log-stream`, headers: {...headers, 'content-type': 'application/x-ndjson', 'x-flotilla-log-batch': batch}, payload: messages.map((message) => JSON.stringify(line(message))).join('\n')})
    assert.equal((await send('0123abcd/1', ['batch 1 a', 'batch 1 b'])).statusCode, 201)
    assert.equal((await send('0123abcd/1', ['batch 1 a', 'batch 1 b'])).statusCode, 201, 'the replay is answered as stored')
    assert.equal((await send('0123abcd/2', ['batch 2'])).statusCode, 201)
    assert.equal((await send('0123abcd/1', ['batch 1 a', 'batch 1 b'])).statusCode, 201)
    assert.deepEqual(await stored(), ['batch 1 a', 'batch 1 b', 'batch 2'], 'each batch stored once')
    assert.equal((await send('99887766/1', ['batch 1 of a new journal'])).statusCode, 201)
    assert.deepEqual((await stored()).at(-1), 'batch 1 of a new journal', 'a new journal (a new data dir) counts from 1 again')
    const malformed = await send('not-a-batch', ['batch x'])
    assert.equal(malformed.statusCode, 400)
    assert.match(JSON.parse(malformed.body) as string, /x-flotilla-log-batch must be/)
  })

  it('[flotilla] stores a numbered batch that failed when it comes again', async () => {
    const deviceId = (await server.db.selectFrom('device').select('id').where('uuid', '=', uuid).executeTakeFirstOrThrow()).id
    const send = () => server.app.inject({method: 'POST', url: `/device/v2/${uuid}/log-stream`, headers: {...headers, 'content-type': 'application/x-ndjson', 'x-flotilla-log-batch': 'feedf00d/7'}, payload: lines(100)})
    const count = async () => (await server.db.selectFrom('device_log').select('id').where('device', '=', deviceId).execute()).length
    const before = await count()
    assert.equal((await withFullDisk(send)).statusCode, 507)
    assert.equal(await count(), before)
    assert.equal((await send()).statusCode, 201)
    assert.equal(await count(), before + 100)
  })

  it('[flotilla] refuses, storing none of it, a numbered batch larger than an agent ever sends, and records no batch for it', async () => {
    const deviceId = (await server.db.selectFrom('device').select('id').where('uuid', '=', uuid).executeTakeFirstOrThrow()).id
    const send = (count: number) =>
      server.app.inject({method: 'POST', url: `/device/v2/${uuid}/log-stream`, headers: {...headers, 'content-type': 'application/x-ndjson', 'x-flotilla-log-batch': 'abad1dea/1'}, payload: Array.from({length: count}, (_, index) => JSON.stringify(line(`big ${index}`))).join('\n')})
    const count = async () => (await server.db.selectFrom('device_log').select('id').where('device', '=', deviceId).where('message', 'like', 'big %').execute()).length
    const refused = await send(501)
    assert.equal(refused.statusCode, 413)
    assert.match(JSON.parse(refused.body) as string, /a numbered log batch holds at most 500 lines and 1 MiB of messages/)
    assert.equal(await count(), 0)
    assert.equal((await send(500)).statusCode, 201, 'the same batch number, within the limits, is stored')
    assert.equal(await count(), 500)
  })

  it('refuses a batch of more than 10 lines', async () => {
    const answer = await server.app.inject({method: 'POST', url: `/device/v2/${uuid}/logs`, headers, payload: Array.from({length: 11}, () => line('x'))})
    assert.equal(answer.statusCode, 400)
    assert.match(JSON.parse(answer.body) as string, /at most 10 log lines/)
  })
})
