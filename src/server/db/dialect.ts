import {type ColumnDataType, type Expression, type Kysely, PostgresAdapter, sql} from 'kysely'

/**
 * The one place that knows SQLite from PostgreSQL. Both store the same values — ids and 0/1 flags as integers,
 * dates as ISO-8601 text, JSON as text, timestamps in ms as 64-bit integers — so queries read the same on both;
 * only the column types that hold them, and the few spellings below, differ.
 */
export type DialectName = 'sqlite' | 'postgres'

/* eslint-disable @typescript-eslint/no-explicit-any -- any schema: migrations run before the typed one exists */
export function dialectOf(db: Kysely<any>): DialectName {
  return db.getExecutor().adapter instanceof PostgresAdapter ? 'postgres' : 'sqlite'
}

type ColumnType = ColumnDataType | Expression<unknown>

export interface ColumnTypes {
  /** Text compared and sorted byte by byte on both (SQLite's BINARY collation; PostgreSQL's "C" whatever the cluster's locale). */
  text: ColumnType
  /** An ISO-8601 string, which sorts as the instant it names. */
  date: ColumnType
  json: ColumnType
  /** 0 or 1: flags are integers on both, so filters bind the same parameters. */
  boolean: ColumnType
  /** 64-bit: sizes and ms timestamps; read back as numbers (db/postgres.ts parses PostgreSQL's int8). */
  bigint: ColumnType
  /** Bytes (release assets' files): read back as a Buffer on PostgreSQL, an ArrayBuffer on SQLite (libsql). */
  binary: ColumnType
}

const TEXT_IN_BYTE_ORDER = sql`text collate "C"`

export const COLUMN_TYPES: Record<DialectName, ColumnTypes> = {
  sqlite: {text: 'text', date: 'text', json: 'text', boolean: 'boolean', bigint: 'integer', binary: 'blob'},
  postgres: {text: TEXT_IN_BYTE_ORDER, date: TEXT_IN_BYTE_ORDER, json: 'text', boolean: 'smallint', bigint: 'bigint', binary: 'bytea'},
}
