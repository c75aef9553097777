/**
 * An answer other than success, as balena's API gives it: the status and a JSON string body saying what was wrong
 * (401 answers carry none, or a short hint). Routes and the OData layer throw these; the app's error handler sends them.
 */
export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message)
    this.name = 'HttpError'
  }
}

export const badRequest = (message: string) => new HttpError(400, message)
export const unauthorized = (message = '') => new HttpError(401, message)
export const notFound = (message = 'Not Found') => new HttpError(404, message)
export const UNIQUE_VIOLATION_MESSAGE = 'Unique key constraint violated'
export const uniqueViolation = (message = UNIQUE_VIOLATION_MESSAGE) => new HttpError(409, message)

/** Whether a database error is a clash on a unique key (SQLite and PostgreSQL spell it differently). */
export function isUniqueConstraintError(error: unknown): boolean {
  const code = (error as {code?: string} | undefined)?.code
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505'
}

/** The one column a unique key clash is on (SQLite says it in the message, PostgreSQL in the detail); none for a key of several columns. */
export function uniqueColumnOf(error: unknown): string | undefined {
  const {message, detail} = error as {message?: string; detail?: string}
  return /^UNIQUE constraint failed: \w+\.(\w+)$/.exec(message ?? '')?.[1] ?? /^Key \((\w+)\)=/.exec(detail ?? '')?.[1]
}

/** `table.column` of a missing value that a NOT NULL column needs, as SQLite and PostgreSQL (23502) report it. */
export function notNullColumnOf(error: unknown): string | undefined {
  const {code, message, table, column} = error as {code?: string; message?: string; table?: string; column?: string}
  if (code === 'SQLITE_CONSTRAINT_NOTNULL') return message?.replace('NOT NULL constraint failed: ', '')
  if (code === '23502' && table && column) return `${table}.${column}`
  return undefined
}

/**
 * Whether PostgreSQL refused a value for its column's type: a number out of range, text where a number belongs,
 * a NUL character in text (its class 22, data exceptions). SQLite stores any value in any column, so never says so.
 */
export function isInvalidValueError(error: unknown): boolean {
  const code = (error as {code?: string} | undefined)?.code
  return typeof code === 'string' && /^22[\dA-Z]{3}$/.test(code)
}

export function isForeignKeyError(error: unknown): boolean {
  const code = (error as {code?: string} | undefined)?.code
  return code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || code === '23503'
}

/** Whether a write failed for want of disk space: SQLite's SQLITE_FULL, PostgreSQL's disk_full, or the file system's ENOSPC. */
export function isDiskFullError(error: unknown): boolean {
  const code = (error as {code?: string} | undefined)?.code
  return code === 'SQLITE_FULL' || code === 'ENOSPC' || code === '53100'
}

/** 507 Insufficient Storage: the client keeps what it sent and tries again later. */
export const diskFull = () => new HttpError(507, 'disk full: the server cannot store this now, try again later')
