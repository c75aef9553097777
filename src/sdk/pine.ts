import {ApiError} from '../errors.js'
import type {FleetClient} from './client.js'

/** Query options of a pine (OData) request, written as OData text with every literal quoted by `odataValue`. */
export interface ODataOptions {
  $select?: string | string[]
  $filter?: string
  $expand?: string
  $orderby?: string
  $top?: number
  $skip?: number
}

/** A row key: a numeric id, or natural key fields such as `{uuid: '…'}`. */
export type ResourceKey = number | Record<string, string | number>

/**
 * An OData literal as pinejs reads it in a URL: a string in single quotes with its quotes doubled and the rest
 * percent-encoded (so `&`, `#`, `%`, `+` and spaces in a value never end or bend the query), numbers, booleans, null.
 */
export function odataValue(value: string | number | boolean | null): string {
  if (value === null) return 'null'
  // A lone surrogate (\p{Cs} in unicode mode) cannot be percent-encoded: it reads as the replacement character.
  if (typeof value === 'string') return `'${encodeURIComponent(value.replaceAll(/\p{Cs}/gu, '\uFFFD').replaceAll("'", "''"))}'`
  return String(value)
}

/** Characters an option's OData text may not hold raw (literals written by odataValue never do): they would end or bend the URL. */
const UNSAFE_IN_QUERY = /[^\w$()',.:;=/@~*!%-]/

function optionText(name: string, value: string | string[] | number): string {
  const text = (Array.isArray(value) ? value.join(',') : String(value)).replaceAll(' ', '%20')
  const unsafe = UNSAFE_IN_QUERY.exec(text)
  if (unsafe) throw new Error(`pine option ${name} holds ${JSON.stringify(unsafe[0])}, which a URL cannot carry there: write its literals with odataValue()`)
  return `${name}=${text}`
}

/**
 * The path and query of a pine request under `/v7`, written as balena's pinejs-client writes it and pinejs parses it
 * (from the raw URL, without decoding it first): OData's own characters `$ ( ) , = / : ; '` as they are, spaces as
 * `%20`, and only the contents of string literals percent-encoded (odataValue). A client that percent-encodes a whole
 * option gets `400 Malformed url` from pinejs.
 */
export function pineUrl(resource: string, options: ODataOptions = {}, target: {key?: ResourceKey; count?: boolean} = {}): string {
  let url = `/v7/${encodeURIComponent(resource)}`
  if (typeof target.key === 'number') url += `(${target.key})`
  else if (target.key) url += `(${Object.entries(target.key).map(([name, value]) => `${name}=${odataValue(value)}`).join(',')})`
  if (target.count) url += '/$count'
  const parts = Object.entries(options)
    .filter((entry): entry is [string, string | string[] | number] => entry[1] !== undefined)
    .map(([name, value]) => optionText(name, value))
  return parts.length > 0 ? `${url}?${parts.join('&')}` : url
}

/** The server's answer to a clash on a unique key (balena answers 409 with "unique" in the body). */
export function isUniqueViolation(error: unknown): boolean {
  return error instanceof ApiError && error.statusCode === 409
}

/** The pine/OData resources under `/v7`. */
export class Pine {
  constructor(private readonly client: FleetClient) {}

  /** The rows matching the options; `anonymous` reads without credentials (what a server lets guests see). */
  async get<T>(resource: string, options: ODataOptions = {}, request: {anonymous?: boolean} = {}): Promise<T[]> {
    const result = await this.client.request<{d: T[]}>('GET', pineUrl(resource, options), request)
    return result.d
  }

  async getOne<T>(resource: string, key: ResourceKey, options: ODataOptions = {}): Promise<T | undefined> {
    const result = await this.client.request<{d: T[]}>('GET', pineUrl(resource, options, {key}))
    return result.d[0]
  }

  async count(resource: string, filter?: string): Promise<number> {
    const result = await this.client.request<{d: number}>('GET', pineUrl(resource, {$filter: filter}, {count: true}))
    return result.d
  }

  async post<T>(resource: string, body: Record<string, unknown>): Promise<T> {
    return this.client.request<T>('POST', pineUrl(resource), {json: body})
  }

  /** PATCH one row by key, or every row matching a filter. */
  async patch(resource: string, target: ResourceKey | {$filter: string}, body: Record<string, unknown>): Promise<void> {
    await this.client.request('PATCH', this.targetPath(resource, target), {json: body})
  }

  async delete(resource: string, target: ResourceKey | {$filter: string}): Promise<void> {
    await this.client.request('DELETE', this.targetPath(resource, target))
  }

  /** Creates the row, or updates it when its natural key already exists (balena clients do the same on a 409). */
  async upsert(resource: string, naturalKey: Record<string, string | number>, body: Record<string, unknown>): Promise<void> {
    try {
      await this.post(resource, {...naturalKey, ...body})
    } catch (error) {
      if (!isUniqueViolation(error)) throw error
      const filter = Object.entries(naturalKey)
        .map(([name, value]) => `${name} eq ${odataValue(value)}`)
        .join(' and ')
      await this.patch(resource, {$filter: filter}, body)
    }
  }

  private targetPath(resource: string, target: ResourceKey | {$filter: string}): string {
    if (typeof target === 'object' && '$filter' in target && typeof target.$filter === 'string') return pineUrl(resource, {$filter: target.$filter})
    return pineUrl(resource, {}, {key: target as ResourceKey})
  }
}
