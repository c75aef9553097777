import {strict as assert} from 'node:assert'
import {mkdtempSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {sql} from 'kysely'

import {DATABASE_FILE, type Db, openDatabase} from '../../../../src/server/db/database.js'
import {FALLBACK_CHECKPOINT_PAGES} from '../../../../src/server/db/wal-checkpoints.js'
import {eventually} from '../../../helpers/fleet-api.js'

describe('WAL checkpoints off the event loop', () => {
  let dataDir: string
  let db: Db
  const file = () => path.join(dataDir, DATABASE_FILE)

  beforeEach(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-checkpoints-'))
    db = await openDatabase({dataDir}, {checkpointsAside: {onError: (message) => assert.fail(message)}})
  })

  afterEach(async () => {
    await db.destroy()
    rmSync(dataDir, {recursive: true, force: true})
  })

  /** About 8 MB in 2,000 pages: twice what SQLite would checkpoint by itself, far less than the server's own fallback. */
  async function writePages(): Promise<void> {
    await sql`create table scratch (id integer primary key, body blob)`.execute(db)
    for (let batch = 0; batch < 20; batch++) {
      await db.transaction().execute(async (trx) => {
        for (let row = 0; row < 100; row++) await sql`insert into scratch (body) values (randomblob(4000))`.execute(trx)
      })
    }
  }

  it("moves the WAL into the database file from a worker, while the server's connection only writes", async () => {
    const {rows} = await sql<{wal_autocheckpoint: number}>`pragma wal_autocheckpoint`.execute(db)
    assert.equal(rows[0].wal_autocheckpoint, FALLBACK_CHECKPOINT_PAGES)
    const before = statSync(file()).size
    await writePages()
    // Only a checkpoint writes pages into the database file: nothing else could have grown it by 8 MB.
    await eventually(async () => statSync(file()).size > before + 7_000_000, 'the written pages checkpointed into the database file', 5000)
  })

  it('stops its worker with the database, the data all there for the next server', async () => {
    const workerPorts = () => process.getActiveResourcesInfo().filter((resource) => resource === 'MessagePort').length
    await writePages()
    const open = workerPorts()
    await db.destroy()
    assert.equal(workerPorts(), open - 1, 'the worker is gone once the database is closed')
    db = await openDatabase({dataDir})
    assert.equal(Number((await sql<{count: number}>`select count(*) as count from scratch`.execute(db)).rows[0].count), 2000)
  })
})
