import {type Dialect, PostgresDialect} from 'kysely'
import type {Pool} from 'pg'

import {ExpectedError} from '../../errors.js'
import {parseDatabaseUrl, type PostgresLocation} from './database-url.js'

/** PostgreSQL's type ids of 64-bit integers (count(*), bigint columns) and numerics (sum, avg). */
const INT8_OID = 20
const NUMERIC_OID = 1700
const CONNECT_TIMEOUT_MS = 10_000

/** Why a first connection failed, as one line naming where (host:port/database, never the password) and what to try. */
export function connectionFailure(location: PostgresLocation, error: unknown): ExpectedError {
  const {code, message} = error as {code?: string; message?: string}
  const where = `PostgreSQL at ${location.address}`
  const reasons: Record<string, string> = {
    ECONNREFUSED: `cannot connect to ${where}: connection refused — is it running and listening there?`,
    ENOTFOUND: `cannot connect to ${where}: no such host — check the host in the database URL`,
    EAI_AGAIN: `cannot connect to ${where}: the host name cannot be resolved now — check the host in the database URL`,
    ETIMEDOUT: `cannot connect to ${where}: no answer within ${CONNECT_TIMEOUT_MS / 1000} s — is it reachable from here?`,
    EHOSTUNREACH: `cannot connect to ${where}: host unreachable`,
    ENOENT: `cannot connect to ${where}: no such socket — is it running?`,
    '28P01': `${where} refused the login: wrong user name or password — check the database URL (or PGPASSWORD)`,
    '28000': `${where} refused the login: ${message} — allow it in pg_hba.conf or use another user`,
    '3D000': `${where} has no database "${location.database}" — create it (createdb ${location.database}) or name another in the URL`,
  }
  if (code && reasons[code]) return new ExpectedError(reasons[code], {cause: error})
  if (/timeout/i.test(message ?? '')) return new ExpectedError(reasons.ETIMEDOUT, {cause: error})
  // pg's own words when the server wants a password and the URL has none.
  if (/password must be a string|SASL/.test(message ?? '')) return new ExpectedError(`${where} asks for a password — put it in the database URL or in PGPASSWORD`, {cause: error})
  return new ExpectedError(`cannot connect to ${where}: ${message ?? String(error)}`, {cause: error})
}

/**
 * A PostgreSQL dialect over a pool of `pg` connections, checked by opening one first so that a wrong URL fails
 * here with a line of its own. 64-bit integers and numerics come back as numbers, as SQLite gives them.
 */
export async function postgresDialect(url: string): Promise<{dialect: Dialect; name: string}> {
  const location = parseDatabaseUrl(url, 'the database URL')
  const {default: pg} = await import('pg')
  const types = {
    getTypeParser(oid: number, format?: 'text' | 'binary') {
      if (oid === INT8_OID || oid === NUMERIC_OID) return (value: string) => Number(value)
      return pg.types.getTypeParser(oid, format)
    },
  }
  const pool: Pool = new pg.Pool({connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: 'flotilla', types})
  // A connection the server drops while idle is replaced by the next query; without a listener the error would end the process.
  pool.on('error', () => {})
  try {
    const client = await pool.connect()
    client.release()
  } catch (error) {
    await pool.end()
    throw connectionFailure(location, error)
  }

  return {dialect: new PostgresDialect({pool}), name: `${location.address}/${location.database}`}
}
