import {UsageError} from '../../errors.js'

/** A PostgreSQL database named by URL, with what messages may show of it: never the password. */
export interface PostgresLocation {
  url: string
  /** `host:port`, as PostgreSQL's clients resolve an empty host and port (PGHOST, PGPORT, else localhost:5432). */
  address: string
  database: string
}

const EXAMPLE = 'postgres://flotilla@127.0.0.1:5432/flotilla'

/**
 * Checks a database URL (`postgres://…` or `postgresql://…`) given by `source` (`--database`, `FLOTILLA_DATABASE_URL`);
 * a bad one is a usage error that does not repeat the text, which may hold a password.
 */
export function parseDatabaseUrl(text: string, source: string): PostgresLocation {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new UsageError(`${source} is not a URL — give a PostgreSQL one such as ${EXAMPLE}`)
  }

  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new UsageError(`${source} must be a PostgreSQL URL (postgres://…), not a ${url.protocol.replace(/:$/, '')}: one — such as ${EXAMPLE}; leave it out to use SQLite in the data dir`)
  }

  const decoded = (part: string, what: string) => {
    try {
      return decodeURIComponent(part)
    } catch {
      throw new UsageError(`${source} has a malformed ${what} (a bad %-escape) — such as ${EXAMPLE}`)
    }
  }

  const database = decoded(url.pathname.replace(/^\//, ''), 'database name')
  const host = url.hostname || url.searchParams.get('host') || process.env.PGHOST || 'localhost'
  const port = url.port || process.env.PGPORT || '5432'
  const user = decoded(url.username, 'user name') || process.env.PGUSER || process.env.USER || ''
  return {url: text, address: host.startsWith('/') ? host : `${host}:${port}`, database: database || process.env.PGDATABASE || user}
}
