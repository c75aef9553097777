import type {FieldType} from '../odata/model.js'

/** How a value of the API is stored: SQLite has no booleans, dates or JSON, so they become 0/1, ISO text and JSON text. */
export function toDatabaseValue(type: FieldType, value: unknown): unknown {
  if (value === null || value === undefined) return null
  switch (type) {
    case 'boolean': {
      return value ? 1 : 0
    }

    case 'date': {
      return new Date(value as string | number | Date).toISOString()
    }

    case 'json': {
      return JSON.stringify(value)
    }

    default: {
      return value
    }
  }
}

/** A stored value as the API answers it. */
export function fromDatabaseValue(type: FieldType, value: unknown): unknown {
  if (value === null || value === undefined) return null
  switch (type) {
    case 'boolean': {
      return value === 1 || value === true || value === '1'
    }

    case 'json': {
      return typeof value === 'string' ? JSON.parse(value) : value
    }

    case 'date': {
      return new Date(value as string).toISOString()
    }

    default: {
      return typeof value === 'bigint' ? Number(value) : value
    }
  }
}

/** Binds a parameter of a filter: booleans and dates the way the database stores them. */
export function toDatabaseParameter(value: unknown): unknown {
  if (typeof value === 'boolean') return value ? 1 : 0
  if (value instanceof Date) return value.toISOString()
  return value
}

export function now(): string {
  return new Date().toISOString()
}
