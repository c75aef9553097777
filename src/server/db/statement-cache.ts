import type SqliteDatabase from 'libsql'
import type {SqliteDatabase as KyselySqliteDatabase, SqliteStatement} from 'kysely'

/** Distinct SQL texts kept prepared; the server's queries are a few hundred shapes, pine's vary more. */
export const STATEMENT_CACHE_SIZE = 500

/** The error better-sqlite3 gave for a value SQLite cannot store; libsql aborts the whole process on a boolean instead. */
const UNBINDABLE = 'SQLite3 can only bind numbers, strings, bigints, buffers, and null'

function checkedParameters(parameters: ReadonlyArray<unknown>): unknown[] {
  for (const parameter of parameters) if (typeof parameter === 'boolean') throw new TypeError(UNBINDABLE)
  return parameters as unknown[]
}

/**
 * A libsql statement as Kysely's driver calls it: whether it returns rows is asked of libsql once (each ask crosses
 * into native code), and a parameter libsql would crash on is refused with an error, as better-sqlite3 did.
 */
function kyselyStatement(statement: SqliteDatabase.Statement): SqliteStatement {
  const reader = statement.reader
  return {
    reader,
    all: (parameters) => statement.all(checkedParameters(parameters)),
    run: (parameters) => statement.run(checkedParameters(parameters)),
    iterate: (parameters) => statement.iterate(checkedParameters(parameters)),
  }
}

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
        statement = kyselyStatement(connection.prepare(sql))
        if (statements.size >= capacity) statements.delete(statements.keys().next().value as string)
      }

      statements.set(sql, statement)
      return statement
    },
  }
}
