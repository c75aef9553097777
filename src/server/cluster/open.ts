import path from 'node:path'

import {sql} from 'kysely'

import type {Db, DatabaseLocation} from '../db/database.js'
import {DATABASE_FILE} from '../db/database.js'
import {type ClusterBus, InProcessBus, newInstanceId} from './bus.js'

/**
 * The cluster bus of a server on this database: LISTEN/NOTIFY on PostgreSQL (several instances), in-process on
 * SQLite (one process; an in-memory database is nobody else's).
 */
export async function openClusterBus(db: Db, location: DatabaseLocation, onError: (error: unknown, message: string) => void): Promise<ClusterBus> {
  if (typeof location === 'object' && 'url' in location) {
    const {PostgresBus} = await import('./postgres-bus.js')
    return PostgresBus.open({
      url: location.url,
      notify: async (channel, payload) => void (await sql`select pg_notify(${channel}, ${payload})`.execute(db)),
      onError,
    })
  }

  return new InProcessBus(location === ':memory:' ? `memory:${newInstanceId()}` : path.resolve(location.dataDir, DATABASE_FILE), onError)
}
