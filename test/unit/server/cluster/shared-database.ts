import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import type {DatabaseLocation} from '../../../../src/server/db/database.js'
import type {DialectName} from '../../../../src/server/db/dialect.js'
import {testPostgres} from '../../../helpers/postgres.js'

/** Where two instances of one test share their database: a fresh SQLite data dir, or a fresh PostgreSQL database. */
export async function sharedLocation(dialect: DialectName): Promise<{location: DatabaseLocation; remove(): Promise<void>}> {
  if (dialect === 'sqlite') {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-cluster-'))
    return {location: {dataDir}, remove: async () => rmSync(dataDir, {recursive: true, force: true})}
  }

  const postgres = await testPostgres()
  const url = await postgres.createDatabase()
  return {location: {url}, remove: () => postgres.dropDatabase(url)}
}

