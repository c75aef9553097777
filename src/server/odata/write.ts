import type {Kysely} from 'kysely'

import type {Actor} from '../auth/actor.js'
import {assertMayWrite} from '../authorization.js'
import {now, toDatabaseValue} from '../db/values.js'
import {badRequest, HttpError, isForeignKeyError, isUniqueConstraintError, notNullColumnOf, unauthorized, uniqueColumnOf, uniqueViolation} from '../http-errors.js'
import {fieldOf, type FieldSpec, RESOURCES, type ResourceSpec} from './model.js'
import type {ParsedRequest} from './parse.js'
import {RESOURCE_RULES, type WriteContext} from './resource-rules.js'
import {ODataReader} from './translate.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- writes reach every table of the model */
type Values = Record<string, unknown>

function checkType(resource: ResourceSpec, name: string, field: FieldSpec, value: unknown): unknown {
  const wrong = (expected: string) => badRequest(`${resource.name}.${name} must be ${expected}`)
  if (value === null) {
    if (field.required) throw wrong('set (not null)')
    return null
  }

  switch (field.type) {
    case 'reference': {
      const id = typeof value === 'object' && value !== null && '__id' in value ? (value as {__id: unknown}).__id : value
      if (typeof id !== 'number' || !Number.isInteger(id)) throw wrong('an id (a whole number)')
      return id
    }

    case 'integer':
    case 'id': {
      if (typeof value !== 'number' || !Number.isInteger(value)) throw wrong('a whole number')
      return value
    }

    case 'real': {
      if (typeof value !== 'number') throw wrong('a number')
      return value
    }

    case 'boolean': {
      if (typeof value !== 'boolean') throw wrong('true or false')
      return value
    }

    case 'date': {
      if ((typeof value !== 'string' && typeof value !== 'number') || Number.isNaN(new Date(value).getTime())) throw wrong('a date (ISO 8601)')
      return value
    }

    case 'text': {
      if (typeof value !== 'string') throw wrong('a string')
      if (field.maxLength !== undefined && value.length > field.maxLength) throw badRequest(`${resource.name}.${name} is ${value.length} characters long: at most ${field.maxLength} are allowed`)
      return value
    }

    default: {
      return value
    }
  }
}

/** The fields of a request body, checked against what the resource lets clients write. */
function bodyValues(resource: ResourceSpec, body: unknown, method: 'POST' | 'PATCH'): Values {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('the request body must be a JSON object')
  const values: Values = {}
  for (const [name, value] of Object.entries(body)) {
    if (value === undefined) continue
    const field = fieldOf(resource, name)
    if (!field) throw badRequest(`unknown field "${name}" of resource "${resource.name}"`)
    const writable = method === 'POST' ? field.create : field.update
    if (!writable) throw badRequest(`${resource.name}.${name} cannot be ${method === 'POST' ? 'set' : 'changed'} by clients`)
    values[name] = checkType(resource, name, field, value)
  }

  return values
}

function databaseRow(resource: ResourceSpec, values: Values): Values {
  const row: Values = {}
  for (const [name, value] of Object.entries(values)) {
    const field = fieldOf(resource, name)
    if (!field || field.computed) continue
    row[name] = toDatabaseValue(field.type === 'reference' ? 'integer' : field.type, value)
  }

  return row
}

/**
 * A clash on one unique column names the column as balena's pine does (`"uuid" must be unique.`) and nothing else:
 * the clashing row may belong to an organization the writer cannot see, so where it is is never said.
 */
function uniqueViolationOf(error: unknown): Error {
  const column = uniqueColumnOf(error)
  return column ? uniqueViolation(`"${column}" must be unique.`) : uniqueViolation()
}

function translateDatabaseError(error: unknown): unknown {
  if (isUniqueConstraintError(error)) return uniqueViolationOf(error)
  if (isForeignKeyError(error)) return badRequest('a referenced row does not exist')
  const missing = notNullColumnOf(error)
  if (missing) return badRequest(`missing required field ${missing}`)
  return error
}

/** Creates, changes and deletes pine resources as the actor, every step through authorization.ts. */
export class ODataWriter {
  constructor(
    private readonly db: Kysely<any>,
    private readonly actor: Actor,
    private readonly registry: string | null = null,
  ) {}

  async create(resource: ResourceSpec, body: unknown): Promise<Values> {
    assertMayWrite(this.actor, resource, 'POST')
    const values = bodyValues(resource, body, 'POST')
    assertMayWrite(this.actor, resource, 'POST', values)
    for (const [name, field] of Object.entries(resource.fields)) {
      if (field.required && (values[name] === undefined || values[name] === null)) throw badRequest(`${resource.name}.${name} is required`)
    }

    const id = await this.inTransaction(async (context, reader) => {
      await this.checkReferencesVisible(reader, resource, values)
      await RESOURCE_RULES[resource.name]?.beforeCreate?.(context, values)
      if (fieldOf(resource, 'created_at')) values.created_at = now()
      const inserted = await context.trx.insertInto(resource.table).values(databaseRow(resource, values)).returning('id').executeTakeFirstOrThrow()
      const newId = Number(inserted.id)
      if (!(await reader.allVisible(resource, [newId]))) throw unauthorized()
      await RESOURCE_RULES[resource.name]?.afterWrite?.(context, [newId], values)
      return newId
    })
    return (await new ODataReader(this.db, this.actor).readById(resource, id)) as Values
  }

  async update(request: ParsedRequest, body: unknown): Promise<void> {
    const values = bodyValues(request.resource, body, 'PATCH')
    assertMayWrite(this.actor, request.resource, 'PATCH', values)
    if (Object.keys(values).length === 0) return
    await this.inTransaction(async (context, reader) => {
      const ids = await reader.matchingIds(request)
      if (ids.length === 0) return
      await this.checkReferencesVisible(reader, request.resource, values)
      await RESOURCE_RULES[request.resource.name]?.beforeUpdate?.(context, ids, values)
      await context.trx.updateTable(request.resource.table).set(databaseRow(request.resource, values)).where('id', 'in', ids).execute()
      if (!(await reader.allVisible(request.resource, ids))) throw unauthorized()
      await RESOURCE_RULES[request.resource.name]?.afterWrite?.(context, ids, values)
    })
  }

  /** Deletes the rows the request names that the actor may see; returns their ids. */
  async delete(request: ParsedRequest): Promise<number[]> {
    assertMayWrite(this.actor, request.resource, 'DELETE')
    return this.inTransaction(async (context, reader) => {
      const ids = await reader.matchingIds(request)
      if (ids.length > 0) await context.trx.deleteFrom(request.resource.table).where('id', 'in', ids).execute()
      return ids
    })
  }

  /** A row may only point at rows its writer can see: linking to another organization's fleet is refused like a missing one. */
  private async checkReferencesVisible(reader: ODataReader, resource: ResourceSpec, values: Values): Promise<void> {
    for (const [name, value] of Object.entries(values)) {
      const field = fieldOf(resource, name)
      if (field?.type !== 'reference' || value === null || !field.target) continue
      if (!(await reader.allVisible(RESOURCES[field.target], [value as number]))) throw unauthorized()
    }
  }

  private async inTransaction<T>(work: (context: WriteContext, reader: ODataReader) => Promise<T>): Promise<T> {
    try {
      return await this.db.transaction().execute(async (trx) => work({trx, actor: this.actor, registry: this.registry}, new ODataReader(trx, this.actor)))
    } catch (error) {
      if (error instanceof HttpError) throw error
      throw translateDatabaseError(error)
    }
  }
}
