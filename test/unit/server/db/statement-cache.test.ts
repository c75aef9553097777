import {strict as assert} from 'node:assert'

import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {sql} from 'kysely'
import SqliteDatabase from 'libsql'

import {openDatabase} from '../../../../src/server/db/database.js'
import {cachingStatements} from '../../../../src/server/db/statement-cache.js'

describe('prepared statement cache', () => {
  let connection: SqliteDatabase.Database
  let prepared: string[]

  beforeEach(() => {
    connection = new SqliteDatabase(':memory:')
    prepared = []
    const prepare = connection.prepare.bind(connection)
    connection.prepare = ((sql: string) => {
      prepared.push(sql)
      return prepare(sql)
    }) as typeof connection.prepare
  })

  afterEach(() => connection.open && connection.close())

  it('prepares a query once and reuses it, with new parameters each time', () => {
    const database = cachingStatements(connection)
    const first = database.prepare('select ? + 1 as answer')
    const second = database.prepare('select ? + 1 as answer')
    assert.equal(second, first)
    assert.deepEqual(prepared, ['select ? + 1 as answer'])
    assert.deepEqual(second.all([41]), [{answer: 42}])
    assert.deepEqual(first.all([1]), [{answer: 2}])
  })

  it('keeps at most its capacity, dropping the least recently used', () => {
    const database = cachingStatements(connection, 2)
    database.prepare('select 1')
    database.prepare('select 2')
    database.prepare('select 1')
    database.prepare('select 3')
    database.prepare('select 1')
    database.prepare('select 2')
    assert.deepEqual(prepared, ['select 1', 'select 2', 'select 3', 'select 2'])
  })

  it('refuses a boolean parameter with an error, as better-sqlite3 did, where libsql would abort the whole server', async () => {
    const db = await openDatabase(':memory:')
    try {
      const query = db.selectFrom('organization').select('id').where('name', '=', true as unknown as string)
      await assert.rejects(query.execute(), {name: 'TypeError', message: /can only bind numbers, strings, bigints, buffers, and null/})
      assert.deepEqual(await db.selectFrom('organization').select('id').where('name', '=', 'none').execute(), [])
    } finally {
      await db.destroy()
    }
  })

  it('serves the server database: the same query twice, a write between, answers as SQLite does', async () => {
    const db = await openDatabase(':memory:')
    try {
      const count = () => db.selectFrom('organization').select((eb) => eb.fn.countAll<number>().as('count')).executeTakeFirstOrThrow()
      const before = (await count()).count
      await db.insertInto('organization').values({created_at: new Date().toISOString(), name: 'cached', handle: 'cached'}).execute()
      assert.equal((await count()).count, before + 1)
    } finally {
      await db.destroy()
    }
  })

  it('commits without waiting for the disk at each commit (WAL, synchronous NORMAL): a state report must not hold the event loop for an fsync', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-sync-'))
    const db = await openDatabase({dataDir})
    try {
      const {rows} = await sql<{synchronous: number}>`pragma synchronous`.execute(db)
      assert.equal(rows[0].synchronous, 1)
      const journal = await sql<{journal_mode: string}>`pragma journal_mode`.execute(db)
      assert.equal(journal.rows[0].journal_mode, 'wal')
    } finally {
      await db.destroy()
      rmSync(dataDir, {recursive: true, force: true})
    }
  })
})
