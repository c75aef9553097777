import {Flags} from '@oclif/core'

/** The environment variable naming the server's PostgreSQL database when --database is not given. */
export const DATABASE_URL_ENV = 'FLOTILLA_DATABASE_URL'

/** `--database`: the same flag on every command that opens the server's database. */
export const databaseFlag = Flags.string({
  description: `PostgreSQL database of the server (postgres://user@host:5432/name) instead of SQLite in the data dir; also ${DATABASE_URL_ENV}, which keeps a password out of the process list`,
  helpValue: 'postgres://…',
})

/**
 * The server's database URL: --database, else FLOTILLA_DATABASE_URL, else none (SQLite). Checked here, so a bad one
 * is named by where it came from; a password on the command line is warned about, as login warns about --password.
 */
export async function databaseUrlOf(flag: string | undefined, warn: (message: string) => void): Promise<string | undefined> {
  const {parseDatabaseUrl} = await import('../server/db/database-url.js')
  if (flag !== undefined) {
    parseDatabaseUrl(flag, '--database')
    if (new URL(flag).password) warn(`a password in --database can be read by other users of this machine (ps, /proc) and stays in shell history — set ${DATABASE_URL_ENV} or PGPASSWORD instead`)
    return flag
  }

  const fromEnvironment = process.env[DATABASE_URL_ENV]
  if (!fromEnvironment) return undefined
  parseDatabaseUrl(fromEnvironment, DATABASE_URL_ENV)
  return fromEnvironment
}
