import type {ExpandPropertyPath, ODataBinds, ODataOptions} from '@balena/odata-parser'
import {type Kysely, type RawBuilder, sql} from 'kysely'

import type {Actor} from '../auth/actor.js'
import {type RowAccess, visibleRows} from '../authorization.js'
import {fromDatabaseValue, toDatabaseParameter} from '../db/values.js'
import {badRequest} from '../http-errors.js'
import {AnswerBudget, type AnswerWeight, checkNavigationDepth, pagingValue} from './limits.js'
import {fieldOf, fieldSql, navigationOf, type NavigationSpec, RESOURCES, type ResourceSpec} from './model.js'
import type {ParsedRequest} from './parse.js'

/**
 * OData → SQL. Identifiers come only from the resource model; every value of the URL is a bound parameter. Each
 * table a query touches (the resource, every navigation in a filter or $orderby, every $expand) is restricted by
 * the actor's visibility from authorization.ts, so nothing of another organization can be read or even detected.
 */

/* eslint-disable @typescript-eslint/no-explicit-any -- the parser's trees are untyped JSON */
type Node = any
type Sql = RawBuilder<unknown>
type Row = Record<string, unknown>

interface Context {
  actor: Actor
  access: RowAccess
  binds: ODataBinds
  counter: {next: number}
  /** Lambda variables in scope: `d` of `owns__device/any(d: d/is_online eq true)`. */
  lambdas: Map<string, {resource: ResourceSpec; alias: string}>
  /** Navigations the SQL being built is nested in (all, and to-many ones), held to limits.ts. */
  depth: {navigations: number; toMany: number}
  /** Rows and bytes the answer has spent so far, held to limits.ts. */
  budget: AnswerBudget
}

interface Base {
  resource: ResourceSpec
  alias: string
}

const COMPARISONS: Record<string, string> = {eq: '=', ne: 'is distinct from', gt: '>', ge: '>=', lt: '<', le: '<='}
const ARITHMETIC: Record<string, string> = {add: '+', sub: '-', mul: '*', div: '/', mod: '%'}

function newAlias(context: Context): string {
  return `t${context.counter.next++}`
}

function bindValue(context: Context, reference: {bind: number | string}): unknown {
  const bind = (context.binds as unknown as Record<string | number, [string, unknown]>)[reference.bind]
  if (!bind) throw badRequest('malformed OData URL: a value is missing')
  const [type, value] = bind
  switch (type) {
    case 'Date':
    case 'Date Time': {
      return new Date(value as number).toISOString()
    }

    case 'List': {
      return (value as Array<[string, unknown]>).map(([, item]) => toDatabaseParameter(item))
    }

    default: {
      return toDatabaseParameter(value)
    }
  }
}

function unknownField(resource: ResourceSpec, name: string): Error {
  return badRequest(`unknown field "${name}" of resource "${resource.name}"`)
}

function targetOf(navigation: NavigationSpec): ResourceSpec {
  return RESOURCES[navigation.target]
}

/** The condition tying a row of the navigation's target (childAlias) to its parent row (parentAlias). */
function correlate(context: Context, parent: Base, navigation: NavigationSpec, childAlias: string): Sql {
  const child = targetOf(navigation)
  const parentValue = fieldSql(parent.resource, parent.alias, navigation.parentField)
  const childValue = fieldSql(child, childAlias, navigation.childField)
  if (!navigation.via) return sql`${childValue} = ${parentValue}`
  const link = newAlias(context)
  return sql`exists (select 1 from ${sql.table(navigation.via.table)} as ${sql.id(link)} where ${sql.ref(`${link}.${navigation.via.parentColumn}`)} = ${parentValue} and ${sql.ref(`${link}.${navigation.via.childColumn}`)} = ${childValue})`
}

function navigationFrom(resource: ResourceSpec, name: string): NavigationSpec {
  const navigation = navigationOf(resource, name)
  if (!navigation) throw badRequest(`unknown navigation "${name}" of resource "${resource.name}"`)
  return navigation
}

/** A sub-select over the navigation's visible target rows that belong to the parent row (built in `context` one navigation deeper). */
function related(context: Context, parent: Base, navigation: NavigationSpec, build: (child: Base, context: Context) => {select: Sql; where?: Sql}): Sql {
  const child = {resource: targetOf(navigation), alias: newAlias(context)}
  const depth = {navigations: context.depth.navigations + 1, toMany: context.depth.toMany + (navigation.many ? 1 : 0)}
  checkNavigationDepth(depth)
  const {select, where} = build(child, {...context, depth})
  return sql`select ${select} from ${sql.table(child.resource.table)} as ${sql.id(child.alias)} where ${correlate(context, parent, navigation, child.alias)} and ${visibleRows(context.actor, child.resource, child.alias, context.access)}${where ? sql` and (${where})` : sql``}`
}

/**
 * Where a path starts: at a lambda variable, or at the resource being filtered (inside a lambda, names without
 * the variable refer to the row that owns the navigation).
 */
function pathStart(context: Context, node: Node, base: Base): {start: Base; node: Node} {
  const lambda = context.lambdas.get(node.name)
  if (lambda) {
    if (!node.property) throw badRequest(`"${node.name}" stands for a whole row: name one of its fields (${node.name}/field)`)
    return {start: lambda, node: node.property}
  }

  return {start: base, node}
}

/** A path used as a value: a field, a computed field, or a field reached through to-one navigations. */
function compileValuePath(context: Context, node: Node, base: Base): Sql {
  if (node.lambda) throw badRequest(`${node.name}/${node.lambda.method}() is a condition, not a value`)
  if (node.count) {
    const navigation = navigationFrom(base.resource, node.name)
    if (!navigation.many) throw badRequest(`$count needs a to-many navigation, and "${node.name}" is not one`)
    const filter = node.options?.$filter
    return sql`(${related(context, base, navigation, (child, inner) => ({select: sql`count(*)`, where: filter ? compileCondition(inner, filter, child) : undefined}))})`
  }

  if (!node.property) {
    if (fieldOf(base.resource, node.name)) return fieldSql(base.resource, base.alias, node.name)
    if (navigationOf(base.resource, node.name)) throw badRequest(`"${node.name}" is a navigation: compare one of its fields (${node.name}/field)`)
    throw unknownField(base.resource, node.name)
  }

  const navigation = navigationFrom(base.resource, node.name)
  if (navigation.many) throw badRequest(`"${node.name}" leads to many rows: use ${node.name}/any(x: ...) or ${node.name}/all(x: ...)`)
  return sql`(${related(context, base, navigation, (child, inner) => ({select: compileValuePath(inner, node.property, child)}))})`
}

function compileValue(context: Context, node: Node, base: Base): Sql {
  if (node === null) return sql`null`
  if (typeof node === 'object' && !Array.isArray(node) && 'bind' in node) {
    const value = bindValue(context, node)
    if (Array.isArray(value)) throw badRequest('a list of values may only follow "in"')
    return sql`${value}`
  }

  if (Array.isArray(node)) {
    const [operator, ...operands] = node
    if (operator === 'call') return compileCall(context, operands[0], base, 'value')
    if (ARITHMETIC[operator]) return sql`(${compileValue(context, operands[0], base)} ${sql.raw(ARITHMETIC[operator])} ${compileValue(context, operands[1], base)})`
    throw badRequest(`"${operator}" cannot be used as a value`)
  }

  if (typeof node === 'object' && typeof node.name === 'string') {
    const {start, node: rest} = pathStart(context, node, base)
    return compileValuePath(context, rest, start)
  }

  throw badRequest('malformed $filter')
}

function likePattern(context: Context, node: Node, base: Base, shape: (escaped: Sql) => Sql): Sql {
  if (typeof node === 'object' && node !== null && 'bind' in node) {
    const value = bindValue(context, node)
    if (typeof value !== 'string') throw badRequest('startswith, endswith and contains compare with a string')
    return shape(sql`${value.replaceAll('\\', '\\\\').replaceAll('%', '\\%').replaceAll('_', '\\_')}`)
  }

  throw badRequest('startswith, endswith and contains take a string literal as their second argument')
}

function compileCall(context: Context, call: {method: string; args: Node[]}, base: Base, use: 'value' | 'condition'): Sql {
  const {method, args} = call
  const value = (index: number) => compileValue(context, args[index], base)
  const like = (subject: number, pattern: number, prefix: string, suffix: string) =>
    likePattern(context, args[pattern], base, (escaped) => sql`${value(subject)} like ${sql.raw(prefix ? "'%' || " : '')}${escaped}${sql.raw(suffix ? " || '%'" : '')} escape '\\'`)
  const conditions: Record<string, () => Sql> = {
    startswith: () => like(0, 1, '', '%'),
    endswith: () => like(0, 1, '%', ''),
    contains: () => like(0, 1, '%', '%'),
    substringof: () => like(1, 0, '%', '%'),
  }
  const values: Record<string, () => Sql> = {
    tolower: () => sql`lower(${value(0)})`,
    toupper: () => sql`upper(${value(0)})`,
    length: () => sql`length(${value(0)})`,
    trim: () => sql`trim(${value(0)})`,
  }
  const table = use === 'condition' ? conditions : values
  if (!Object.hasOwn(table, method)) {
    const known = Object.hasOwn(conditions, method) || Object.hasOwn(values, method)
    throw badRequest(known ? `${method}() cannot be used as a ${use} here` : `unsupported function ${method}()`)
  }

  return table[method]()
}

function compileComparison(context: Context, operator: string, left: Node, right: Node, base: Base): Sql {
  if (left === null && right === null) return sql`${sql.raw(operator === 'eq' ? '1 = 1' : '1 = 0')}`
  if (right === null || left === null) {
    const subject = compileValue(context, right === null ? left : right, base)
    if (operator === 'eq') return sql`${subject} is null`
    if (operator === 'ne') return sql`${subject} is not null`
    throw badRequest(`null can only be compared with eq or ne, not ${operator}`)
  }

  return sql`${compileValue(context, left, base)} ${sql.raw(COMPARISONS[operator])} ${compileValue(context, right, base)}`
}

function compileLambda(context: Context, parent: Base, node: Node): Sql {
  // On a to-one navigation (balena's `is_for__device_type/any(dt: dt/slug in (...))`) it tests the one row, if any.
  const navigation = navigationFrom(parent.resource, node.name)
  const {identifier, method, expression} = node.lambda
  if (method !== 'any' && method !== 'all') throw badRequest(`unsupported lambda ${method}()`)
  const subquery = related(context, parent, navigation, (child, nested) => {
    const lambdas = new Map(nested.lambdas).set(identifier, child)
    const inner = compileCondition({...nested, lambdas}, expression, parent)
    return {select: sql`1`, where: method === 'any' ? inner : sql`not (${inner})`}
  })
  return method === 'any' ? sql`exists (${subquery})` : sql`not exists (${subquery})`
}

/** A path used as a condition: any()/all() at its end, or a boolean field. */
function compileConditionPath(context: Context, node: Node, base: Base): Sql {
  if (node.lambda) return compileLambda(context, base, node)
  if (!node.property) return sql`${compileValuePath(context, node, base)} = ${toDatabaseParameter(true)}`
  const navigation = navigationFrom(base.resource, node.name)
  if (navigation.many) throw badRequest(`"${node.name}" leads to many rows: use ${node.name}/any(x: ...) or ${node.name}/all(x: ...)`)
  return sql`exists (${related(context, base, navigation, (child, inner) => ({select: sql`1`, where: compileConditionPath(inner, node.property, child)}))})`
}

/** Compiles a $filter expression tree into a SQL condition over `base`. */
function compileCondition(context: Context, node: Node, base: Base): Sql {
  if (Array.isArray(node)) {
    const [operator, ...operands] = node
    switch (operator) {
      case 'and':
      case 'or': {
        return sql`(${sql.join(
          operands.map((operand: Node) => compileCondition(context, operand, base)),
          sql.raw(` ${operator} `),
        )})`
      }

      case 'not': {
        return sql`not (${compileCondition(context, operands[0], base)})`
      }

      case 'eqany': {
        const list = operands[1] && 'bind' in operands[1] ? bindValue(context, operands[1]) : undefined
        if (!Array.isArray(list)) throw badRequest('"in" takes a list of values: field in (1, 2)')
        if (list.length === 0) return sql`1 = 0`
        return sql`${compileValue(context, operands[0], base)} in (${sql.join(list.map((item) => sql`${item}`))})`
      }

      case 'call': {
        return compileCall(context, operands[0], base, 'condition')
      }

      default: {
        if (COMPARISONS[operator]) return compileComparison(context, operator, operands[0], operands[1], base)
        throw badRequest(`unsupported operator "${operator}" in $filter`)
      }
    }
  }

  if (node && typeof node === 'object' && typeof node.name === 'string') {
    const {start, node: rest} = pathStart(context, node, base)
    return compileConditionPath(context, rest, start)
  }

  if (node && typeof node === 'object' && 'bind' in node) {
    const value = bindValue(context, node)
    if (value === 1 || value === 0) return sql`${sql.raw(value === 1 ? '1 = 1' : '1 = 0')}`
  }

  throw badRequest('malformed $filter: expected a condition')
}

function orderBy(context: Context, options: ODataOptions, base: Base): Sql {
  const terms = (options.$orderby?.properties ?? []).map((property: Node) => {
    const direction = property.order === 'desc' ? 'desc' : 'asc'
    return sql`${compileValuePath(context, property, base)} ${sql.raw(direction)}`
  })
  terms.push(sql`${sql.ref(`${base.alias}.id`)} asc`)
  return sql.join(terms)
}

function selectList(resource: ResourceSpec, alias: string): Sql {
  return sql.join(Object.keys(resource.fields).map((name) => sql`${fieldSql(resource, alias, name)} as ${sql.id(name)}`))
}

export interface Fetched {
  values: Row
  expanded: Record<string, unknown>
  /** What this row stands for in the answer, with every copy of what is expanded under it. */
  weight: AnswerWeight
}

export class ODataReader {
  /** `access`: `read` for pine GETs (public rows included), `manage` for writes and routes acting on rows. */
  constructor(
    private readonly db: Kysely<any>,
    private readonly actor: Actor,
    private readonly access: RowAccess = 'manage',
  ) {}

  private context(binds: ODataBinds): Context {
    return {actor: this.actor, access: this.access, binds, counter: {next: 0}, lambdas: new Map(), depth: {navigations: 0, toMany: 0}, budget: new AnswerBudget()}
  }

  /** The rows a request names (collection, or key), shaped as pine answers them; a number for $count. */
  async read(request: ParsedRequest): Promise<Row[] | number> {
    const context = this.context(request.binds)
    const base = {resource: request.resource, alias: newAlias(context)}
    const conditions = this.conditions(context, request, base)
    if (request.count) {
      const result = await sql<{count: number}>`select count(*) as ${sql.id('count')} from ${sql.table(base.resource.table)} as ${sql.id(base.alias)} where ${sql.join(conditions, sql` and `)}`.execute(this.db)
      return Number(result.rows[0].count)
    }

    const rows = await this.fetch(context, base, request.options, conditions, true)
    context.budget.check(rows.reduce((total, row) => addWeight(total, row.weight), {rows: 0, bytes: 0}))
    return rows.map((row) => shapeRow(base.resource, row, request.options))
  }

  /** One visible row by id, with every field. */
  async readById(resource: ResourceSpec, id: number): Promise<Row | undefined> {
    const context = this.context([] as unknown as ODataBinds)
    const base = {resource, alias: newAlias(context)}
    const conditions = [visibleRows(this.actor, resource, base.alias, this.access), sql`${sql.ref(`${base.alias}.id`)} = ${id}`]
    const rows = await this.fetch(context, base, {}, conditions, false)
    return rows[0] && shapeRow(resource, rows[0], {})
  }

  /** The ids of the visible rows a request names, for writes. */
  async matchingIds(request: ParsedRequest): Promise<number[]> {
    const context = this.context(request.binds)
    const base = {resource: request.resource, alias: newAlias(context)}
    const conditions = this.conditions(context, request, base)
    const result = await sql<{id: number}>`select ${sql.ref(`${base.alias}.id`)} as id from ${sql.table(base.resource.table)} as ${sql.id(base.alias)} where ${sql.join(conditions, sql` and `)}`.execute(this.db)
    return result.rows.map((row) => Number(row.id))
  }

  /** Whether every one of these rows is visible to the actor (after a write, or before linking to it). */
  async allVisible(resource: ResourceSpec, ids: number[]): Promise<boolean> {
    if (ids.length === 0) return true
    const alias = 't0'
    const result = await sql<{count: number}>`select count(*) as ${sql.id('count')} from ${sql.table(resource.table)} as ${sql.id(alias)} where ${sql.ref(`${alias}.id`)} in (${sql.join(ids)}) and ${visibleRows(this.actor, resource, alias, this.access)}`.execute(this.db)
    return Number(result.rows[0].count) === new Set(ids).size
  }

  private conditions(context: Context, request: ParsedRequest, base: Base): Sql[] {
    const conditions = [visibleRows(this.actor, base.resource, base.alias, this.access)]
    for (const [name, reference] of Object.entries(request.key ?? {})) {
      if (!fieldOf(base.resource, name)) throw unknownField(base.resource, name)
      conditions.push(sql`${fieldSql(base.resource, base.alias, name)} = ${bindValue(context, reference)}`)
    }

    if (request.options.$filter !== undefined) conditions.push(compileCondition(context, request.options.$filter, base))
    return conditions
  }

  /** `link`, for an $expand: the parent's value each child row is fetched for, reached through `join` when it is a link table's. */
  private async fetch(context: Context, base: Base, options: ODataOptions, conditions: Sql[], paged: boolean, link?: ExpandLink): Promise<Array<Fetched & {link?: unknown}>> {
    validateSelect(base.resource, options)
    const top = pagingValue(context.binds, options.$top, '$top')
    const skip = pagingValue(context.binds, options.$skip, '$skip')
    // Every query asks for at most one row more than the answer may still hold, so no query can fill the memory.
    const limit = Math.min(paged ? (top ?? Number.POSITIVE_INFINITY) : Number.POSITIVE_INFINITY, context.budget.queryLimit())
    const paging = sql` limit ${limit}${paged && skip ? sql` offset ${skip}` : sql``}`
    const linkColumn = link ? sql`, ${link.value} as ${sql.id('__link')}` : sql``
    const query = sql<Row>`select ${selectList(base.resource, base.alias)}${linkColumn} from ${sql.table(base.resource.table)} as ${sql.id(base.alias)}${link?.join ?? sql``} where ${sql.join(conditions, sql` and `)} order by ${orderBy(context, options, base)}${paging}`
    const result = await query.execute(this.db)
    context.budget.fetchedRows(result.rows.length)
    const rows = result.rows.map((values) => {
      const {__link: linkValue, ...rest} = values
      const fetched = {values: rest, expanded: {} as Record<string, unknown>, link: linkValue, weight: {rows: 1, bytes: 0}}
      fetched.weight.bytes = JSON.stringify(shapeRow(base.resource, fetched, options)).length + 1
      return fetched
    })
    for (const property of (options.$expand?.properties ?? []) as ExpandPropertyPath[]) await this.expand(context, base, rows, property)
    return rows
  }

  private async expand(context: Context, parent: Base, rows: Fetched[], property: ExpandPropertyPath): Promise<void> {
    if (property.property) throw badRequest(`$expand=${property.name}/${property.property.name} is not supported: nest it as ${property.name}($expand=${property.property.name})`)
    const navigation = navigationFrom(parent.resource, property.name)
    const child = {resource: targetOf(navigation), alias: newAlias(context)}
    const options = property.options ?? {}
    const parentValues = [...new Set(rows.map((row) => row.values[navigation.parentField]).filter((value) => value !== null && value !== undefined))]
    const conditions = [visibleRows(context.actor, child.resource, child.alias, context.access)]
    if (options.$filter !== undefined) conditions.push(compileCondition(context, options.$filter, child))
    const link = expandLink(context, navigation, child)
    conditions.push(sql`${link.value} in (${sql.join(parentValues.length > 0 ? parentValues : [null])})`)
    if (property.count) {
      const counts = new Map<unknown, number>()
      if (parentValues.length > 0) {
        // Grouped by position: the very expression selected, on both dialects.
        const result = await sql<{link: unknown; count: number}>`select ${link.value} as ${sql.id('link')}, count(*) as ${sql.id('count')} from ${sql.table(child.resource.table)} as ${sql.id(child.alias)}${link.join ?? sql``} where ${sql.join(conditions, sql` and `)} group by 1`.execute(this.db)
        for (const row of result.rows) counts.set(row.link, Number(row.count))
      }

      for (const row of rows) row.expanded[property.name] = counts.get(row.values[navigation.parentField]) ?? 0
      return
    }

    const children = parentValues.length > 0 ? await this.fetch(context, child, options, conditions, false, link) : []
    const top = pagingValue(context.binds, options.$top, '$top')
    const skip = pagingValue(context.binds, options.$skip, '$skip') ?? 0
    const groups = new Map<unknown, Array<Fetched>>()
    for (const fetched of children) {
      const group = groups.get(fetched.link) ?? []
      group.push(fetched)
      groups.set(fetched.link, group)
    }

    for (const row of rows) {
      const group = groups.get(row.values[navigation.parentField]) ?? []
      const page = group.slice(skip, top === undefined ? undefined : skip + top)
      // Rows shared by several parents are sent once under each: the answer's weight counts every copy.
      context.budget.shapedRows(page.length)
      row.expanded[property.name] = page.map((fetched) => shapeRow(child.resource, fetched, options))
      for (const fetched of page) addWeight(row.weight, fetched.weight)
      context.budget.check(row.weight)
    }
  }
}

/** How an $expand's child rows are matched to their parents: by a column of the child, or through a link table. */
interface ExpandLink {
  value: Sql
  join?: Sql
}

/**
 * A child linked to several parents through a link table (a user member of several organizations) is fetched once
 * for each of them, joined, so that it is answered under every parent.
 */
function expandLink(context: Context, navigation: NavigationSpec, child: Base): ExpandLink {
  if (!navigation.via) return {value: fieldSql(child.resource, child.alias, navigation.childField)}
  const via = newAlias(context)
  return {
    value: sql.ref(`${via}.${navigation.via.parentColumn}`),
    join: sql` join ${sql.table(navigation.via.table)} as ${sql.id(via)} on ${sql.ref(`${via}.${navigation.via.childColumn}`)} = ${fieldSql(child.resource, child.alias, navigation.childField)}`,
  }
}

function addWeight(total: AnswerWeight, weight: AnswerWeight): AnswerWeight {
  total.rows += weight.rows
  total.bytes += weight.bytes
  return total
}

function validateSelect(resource: ResourceSpec, options: ODataOptions): void {
  const select = options.$select
  if (!select || select === '*') return
  for (const property of select.properties) {
    if (property.property || !fieldOf(resource, property.name)) throw unknownField(resource, property.property ? `${property.name}/${property.property.name}` : property.name)
  }
}

/** A fetched row as pine answers it: every field (or the $select ones), `{__id}` for unexpanded references. */
export function shapeRow(resource: ResourceSpec, row: Fetched, options: ODataOptions): Row {
  const select = options.$select
  const names = !select || select === '*' ? Object.keys(resource.fields) : select.properties.map((property) => property.name)
  const shaped: Row = {}
  for (const name of names) {
    if (Object.hasOwn(row.expanded, name)) continue
    const field = resource.fields[name]
    const value = row.values[name]
    if (field.type === 'reference') shaped[name] = value === null || value === undefined ? null : {__id: Number(value)}
    else shaped[name] = fromDatabaseValue(field.type, value)
  }

  return Object.assign(shaped, row.expanded)
}
