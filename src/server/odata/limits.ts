import type {ExpandPropertyPath, ODataBinds, ODataOptions} from '@balena/odata-parser'

import {badRequest} from '../http-errors.js'
import type {ParsedRequest} from './parse.js'

/**
 * What one pine request may cost. Every limit is refused with a 400 naming it, before or while the answer is read,
 * so no request can hold the event loop or the server's memory for long: nested `$expand` through shared rows (a
 * fleet's devices, each device's fleet, its devices again…) otherwise grows exponentially with the depth.
 *
 * The deepest `$expand` balena's own clients send is 4 levels (balena-sdk's fleet with its devices' service details:
 * owns__device → image_install → installs__image → is_a_build_of__service); the deepest navigation path in their
 * filters is 3, with at most 2 `any()` over to-many navigations nested (balena-sdk's device types with a default
 * fleet that has a final release).
 */
export interface ODataLimits {
  /** Levels of `$expand` inside one another. */
  expandDepth: number
  /** `$expand` items in one request, counted at every level. */
  expansions: number
  /** Navigations one $filter or $orderby path goes through, lambdas and $count included, nested in each other. */
  navigationDepth: number
  /** any(), all() and $count over to-many navigations nested in each other: each multiplies the rows SQL visits. */
  toManyDepth: number
  /** How deeply a $filter nests (and, or, not, functions, paths, lambdas), as the parser's tree. */
  expressionDepth: number
  /** Rows in one answer, every copy of an expanded row counted as it is sent. */
  rows: number
  /** About the size of one answer in bytes (its JSON), every copy of an expanded row counted. */
  bytes: number
}

export const ODATA_LIMITS: Readonly<ODataLimits> = {
  expandDepth: 6,
  expansions: 50,
  navigationDepth: 6,
  toManyDepth: 2,
  expressionDepth: 64,
  rows: 100_000,
  bytes: 64 * 1024 * 1024,
}

/* eslint-disable @typescript-eslint/no-explicit-any -- the parser's trees are untyped JSON */
type Node = any

/** `$top` and `$skip` as numbers: whole, not negative, and small enough for SQL to take exactly. */
export function pagingValue(binds: ODataBinds, option: unknown, name: '$top' | '$skip'): number | undefined {
  if (option === undefined) return undefined
  const reference = typeof option === 'object' && option !== null && 'bind' in option ? (option as {bind: number | string}).bind : undefined
  const bind = reference === undefined ? undefined : (binds as unknown as Record<string | number, [string, unknown] | undefined>)[reference]
  const value = bind ? bind[1] : option
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw badRequest(`${name} must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}`)
  return value
}

/** The deepest nesting of a parser tree (arrays and objects), counted up to just past `limit`. */
function nestingDepth(node: Node, limit: number): number {
  if (typeof node !== 'object' || node === null) return 0
  if (limit < 0) return 1
  let deepest = 0
  for (const child of Object.values(node)) deepest = Math.max(deepest, nestingDepth(child, limit - 1))
  return 1 + deepest
}

function checkFilter(filter: Node, limits: ODataLimits): void {
  if (filter === undefined) return
  if (nestingDepth(filter, limits.expressionDepth) > limits.expressionDepth) {
    throw badRequest(`$filter is nested too deeply (and, or, not, parentheses, functions, paths): at most ${limits.expressionDepth} levels are allowed`)
  }
}

/** The options of one level (the request's, or an $expand item's), then each $expand item's, one level deeper. */
function checkOptions(options: ODataOptions, binds: ODataBinds, limits: ODataLimits, level: number, count: {expansions: number}): void {
  pagingValue(binds, options.$top, '$top')
  pagingValue(binds, options.$skip, '$skip')
  checkFilter(options.$filter, limits)
  const items = (options.$expand?.properties ?? []) as ExpandPropertyPath[]
  if (items.length === 0) return
  if (level + 1 > limits.expandDepth) throw badRequest(`$expand is nested more than ${limits.expandDepth} levels deep: at most ${limits.expandDepth} levels are allowed`)
  count.expansions += items.length
  if (count.expansions > limits.expansions) throw badRequest(`$expand names more than ${limits.expansions} navigations in one request: at most ${limits.expansions} are allowed`)
  for (const item of items) checkOptions(item.options ?? {}, binds, limits, level + 1, count)
}

/** Refuses, before anything is read, a request whose shape alone exceeds the limits. */
export function checkODataLimits(request: ParsedRequest, limits: ODataLimits = ODATA_LIMITS): void {
  checkOptions(request.options, request.binds, limits, 0, {expansions: 0})
}

/** Refuses a path through more navigations, or more nested to-many ones, than the limits allow (checked as SQL is built). */
export function checkNavigationDepth(depth: {navigations: number; toMany: number}, limits: ODataLimits = ODATA_LIMITS): void {
  if (depth.navigations > limits.navigationDepth) throw badRequest(`a $filter or $orderby path goes through more than ${limits.navigationDepth} navigations nested in each other: at most ${limits.navigationDepth} are allowed`)
  if (depth.toMany > limits.toManyDepth) throw badRequest(`a $filter nests more than ${limits.toManyDepth} any(), all() or $count over to-many navigations: at most ${limits.toManyDepth} are allowed`)
}

/** The rows and bytes one row stands for in the answer: its own, and every copy of what is expanded under it. */
export interface AnswerWeight {
  rows: number
  bytes: number
}

const MIB = 1024 * 1024

/**
 * The rows and bytes spent on one answer as it is read: rows fetched from the database (so queries ask for at most
 * one more than is left), rows shaped (one a parent and expanded child), and the weight of the answer as sent.
 */
export class AnswerBudget {
  private fetched = 0
  private shaped = 0

  constructor(private readonly limits: ODataLimits = ODATA_LIMITS) {}

  /** The SQL limit of the next query: one row more than may still be fetched, so going over is seen. */
  queryLimit(): number {
    return this.limits.rows - this.fetched + 1
  }

  fetchedRows(count: number): void {
    this.fetched += count
    if (this.fetched > this.limits.rows) throw this.tooManyRows()
  }

  shapedRows(count: number): void {
    this.shaped += count
    if (this.shaped > this.limits.rows) throw this.tooManyRows()
  }

  /** Refuses a weight (one row's with its expansions, or the whole answer's) over the limits. */
  check(weight: AnswerWeight): void {
    if (weight.rows > this.limits.rows) throw this.tooManyRows()
    if (weight.bytes > this.limits.bytes) {
      const size = this.limits.bytes % MIB === 0 ? `${this.limits.bytes / MIB} MiB` : `${this.limits.bytes} bytes`
      throw badRequest(`the answer would be more than ${size} (expanded rows counted every time they appear): ask for less with $select, $filter, $top or a shallower $expand`)
    }
  }

  private tooManyRows(): Error {
    return badRequest(`the answer would hold more than ${this.limits.rows} rows (expanded rows counted every time they appear): ask for fewer with $filter, $top or a shallower $expand`)
  }
}
