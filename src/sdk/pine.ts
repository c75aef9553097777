import {ApiError} from '../errors.js'
import type {FleetClient} from './client.js'

/** Query options of a pine (OData) request; each is passed through as written. */
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

/** Quotes a value for an OData filter: strings in single quotes with quotes doubled. */
export function odataValue(value: string | number | boolean | null): string {
  if (value === null) return 'null'
  if (typeof value === 'string') return `'${value.replaceAll("'", "''")}'`
  return String(value)
}

function keyPart(key: ResourceKey): string {
  if (typeof key === 'number') return `(${key})`
  const parts = Object.entries(key).map(([name, value]) => `${name}=${odataValue(value)}`)
  return `(${parts.join(',')})`
}

function queryString(options: ODataOptions): string {
  const parts: string[] = []
  for (const [name, value] of Object.entries(options)) {
    if (value === undefined) continue
    const text = Array.isArray(value) ? value.join(',') : String(value)
    parts.push(`${name}=${encodeURIComponent(text)}`)
  }

  return parts.length > 0 ? `?${parts.join('&')}` : ''
}

/** The server's answer to a clash on a unique key (balena answers 409 with "unique" in the body). */
export function isUniqueViolation(error: unknown): boolean {
  return error instanceof ApiError && error.statusCode === 409
}

/** The pine/OData resources under `/v7`. */
export class Pine {
  constructor(private readonly client: FleetClient) {}

  async get<T>(resource: string, options: ODataOptions = {}): Promise<T[]> {
    const result = await this.client.request<{d: T[]}>('GET', `/v7/${resource}${queryString(options)}`)
    return result.d
  }

  async getOne<T>(resource: string, key: ResourceKey, options: ODataOptions = {}): Promise<T | undefined> {
    const result = await this.client.request<{d: T[]}>('GET', `/v7/${resource}${keyPart(key)}${queryString(options)}`)
    return result.d[0]
  }

  async count(resource: string, filter?: string): Promise<number> {
    const result = await this.client.request<{d: number}>('GET', `/v7/${resource}/$count${queryString({$filter: filter})}`)
    return result.d
  }

  async post<T>(resource: string, body: Record<string, unknown>): Promise<T> {
    return this.client.request<T>('POST', `/v7/${resource}`, {json: body})
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
    if (typeof target === 'object' && '$filter' in target && typeof target.$filter === 'string') {
      return `/v7/${resource}${queryString({$filter: target.$filter})}`
    }

    return `/v7/${resource}${keyPart(target as ResourceKey)}`
  }
}
