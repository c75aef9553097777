import type SqliteDatabase from 'better-sqlite3'
import type {SqliteDatabase as KyselySqliteDatabase, SqliteStatement} from 'kysely'

/** Distinct SQL texts kept prepared; the server's queries are a few hundred shapes, pine's vary more. */
export const STATEMENT_CACHE_SIZE = 500

/**
 * The SQLite connection as Kysely's driver sees it, with prepared statements kept by SQL text (least recently
 * used dropped first): Kysely prepares every query it runs, and preparing costs more than running the small
 * queries of a device's poll. Kysely runs one query at a time on the one connection (a mutex), so a statement is
 * never in use twice at once.
 */
export function cachingStatements(connection: SqliteDatabase.Database, capacity = STATEMENT_CACHE_SIZE): KyselySqliteDatabase {
  const statements = new Map<string, SqliteStatement>()
  return {
    close: () => {
      statements.clear()
      connection.close()
    },
    prepare(sql: string): SqliteStatement {
      let statement = statements.get(sql)
      if (statement) {
        // Map keeps insertion order: taking it out and in again makes it the most recently used.
        statements.delete(sql)
      } else {
        statement = connection.prepare(sql) as unknown as SqliteStatement
        if (statements.size >= capacity) statements.delete(statements.keys().next().value as string)
      }

      statements.set(sql, statement)
      return statement
    },
  }
}
