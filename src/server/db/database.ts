import path from 'node:path'

import SqliteDatabase from 'libsql'
import {type DatabaseConnection, type Dialect, type Driver, Kysely, type LogConfig, Migrator, SqliteDialect, SqliteDriver} from 'kysely'

import {ExpectedError} from '../../errors.js'
import {securePrivateDir} from '../data-dir.js'
import {migrationProvider} from './migrations.js'
import {postgresDialect} from './postgres.js'
import {cachingStatements} from './statement-cache.js'
import type {Database} from './schema.js'
import {WalCheckpoints} from './wal-checkpoints.js'

export type Db = Kysely<Database>

export const DATABASE_FILE = 'flotilla.db'

/**
 * SQLite ends a transaction by itself when a write fails for want of space (SQLITE_FULL) or memory; rolling it
 * back again would fail with "cannot rollback - no transaction is active" and hide the real cause from the caller.
 */
class SqliteDialectKeepingCauses extends SqliteDialect {
  constructor(
    private readonly connection: SqliteDatabase.Database,
    private readonly checkpoints?: WalCheckpoints,
  ) {
    super({database: connection})
  }

  override createDriver(): Driver {
    const {connection, checkpoints} = this
    return new (class extends SqliteDriver {
      override async rollbackTransaction(databaseConnection: DatabaseConnection): Promise<void> {
        if (connection.inTransaction) await super.rollbackTransaction(databaseConnection)
      }

      override async destroy(): Promise<void> {
        await checkpoints?.stop()
        await super.destroy()
      }
    })({database: cachingStatements(connection)})
  }
}

/** Where the server's database is: `<dataDir>/flotilla.db`, an in-memory SQLite one, or a PostgreSQL server's (`postgres://…`). */
export type DatabaseLocation = {dataDir: string} | ':memory:' | {url: string}

/** The database of a server: PostgreSQL when given a URL, else SQLite in its data dir, else SQLite in memory. */
export function databaseLocation(options: {dataDir?: string; databaseUrl?: string}): DatabaseLocation {
  if (options.databaseUrl) return {url: options.databaseUrl}
  return options.dataDir ? {dataDir: options.dataDir} : ':memory:'
}

/** What a dialect factory gives openDatabase: the dialect, and how to name the database in errors. */
interface OpenedDialect {
  dialect: Dialect
  /** The file, or `host:port/database` (never the password). */
  name: string
}

/**
 * SQLite in the data dir (`<dataDir>/flotilla.db`, or an in-memory one for `:memory:`), a dir only the server's
 * user can read. WAL lets `server user add` write while a server has the file open.
 */
function sqliteDialect(location: {dataDir: string} | ':memory:', options: OpenOptions): OpenedDialect {
  let file = ':memory:'
  if (location !== ':memory:') {
    // SQLite gives its -wal and -shm files the mode of the database file, so they are private too.
    securePrivateDir(location.dataDir, DATABASE_FILE)
    file = path.join(location.dataDir, DATABASE_FILE)
  }

  const connection = new SqliteDatabase(file)
  connection.pragma('journal_mode = WAL')
  // In WAL mode NORMAL syncs at checkpoints, not at each commit (an fsync of ~5 ms with the event loop held): a commit can be lost to a power cut, never to a crash, and never corrupts.
  connection.pragma('synchronous = NORMAL')
  connection.pragma('foreign_keys = ON')
  connection.pragma('busy_timeout = 5000')
  // OData's startswith/contains are case-sensitive; SQLite's LIKE is not unless asked.
  connection.pragma('case_sensitive_like = ON')
  const checkpoints = options.checkpointsAside && file !== ':memory:' ? new WalCheckpoints(connection, file, options.checkpointsAside.onError) : undefined
  return {dialect: new SqliteDialectKeepingCauses(connection, checkpoints), name: file}
}

export interface OpenOptions {
  log?: LogConfig
  /**
   * A server's long-lived SQLite database: its WAL is checkpointed by a worker thread, off the event loop
   * (WalCheckpoints). Not for the short-lived handles of admin commands.
   */
  checkpointsAside?: {onError: (message: string) => void}
}

/** Opens the server's database, SQLite or PostgreSQL by its location, and brings its schema up to date. */
export async function openDatabase(location: DatabaseLocation, options: OpenOptions = {}): Promise<Db> {
  const {dialect, name} = typeof location === 'object' && 'url' in location ? await postgresDialect(location.url) : sqliteDialect(location, options)
  const db = new Kysely<Database>({dialect, log: options.log})
  const {error, results} = await new Migrator({db, provider: migrationProvider}).migrateToLatest()
  if (error) {
    await db.destroy()
    const failed = results?.find((result) => result.status === 'Error')?.migrationName
    throw new ExpectedError(`cannot update the database schema of ${name}${failed ? ` (migration ${failed})` : ''}: ${String(error)}`, {cause: error})
  }

  return db
}
