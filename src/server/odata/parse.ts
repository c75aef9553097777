import odataParser, {type ODataBinds, type ODataOptions, type ODataQuery} from '@balena/odata-parser'

import {badRequest, notFound} from '../http-errors.js'
import {resourceNamed, type ResourceSpec} from './model.js'

export interface ParsedRequest {
  resource: ResourceSpec
  /** `(123)` or `(uuid='…')`: field name → bind reference. */
  key?: Record<string, {bind: number | string}>
  count: boolean
  options: ODataOptions
  binds: ODataBinds
}

/**
 * Parses a pine URL relative to the API root (`/device(1)?$select=uuid`) as pinejs does: the raw URL, not decoded first,
 * so OData's own characters must arrive as they are and only literals' contents percent-encoded (the parser decodes
 * those, and `%20`, `%27`, `%24` where it allows them). Anything else is pinejs's `400 Malformed url: '<url>'`, the URL
 * named as the client sent it (`apiRoot` + `url`, an `apikey` in it blanked); an unknown resource is a 404.
 */
export function parseODataUrl(url: string, apiRoot = ''): ParsedRequest {
  let parsed: {tree: ODataQuery; binds: ODataBinds}
  try {
    parsed = odataParser.parse(url, {startRule: 'ProcessRule', rule: 'OData'})
  } catch {
    // A syntax error, or a literal whose percent-encoding does not decode (a URIError): both are the client's URL.
    throw badRequest(`Malformed url: '${apiRoot}${url.replaceAll(/([?&]apikey=)[^&]*/gi, '$1<hidden>')}'`)
  }

  const {tree, binds} = parsed
  const resource = typeof tree.resource === 'string' ? resourceNamed(tree.resource) : undefined
  if (!resource) throw notFound(`unknown resource "${String(tree.resource)}"`)
  if (tree.property || tree.link) throw badRequest('navigating from a resource key (/resource(id)/navigation) is not supported: use $expand')
  let key: ParsedRequest['key']
  if (tree.key) key = 'bind' in tree.key ? {id: tree.key as {bind: number}} : (tree.key as Record<string, {bind: number}>)
  const options = {...tree.options}
  for (const name of Object.keys(options)) {
    if (name === 'apikey' || name.startsWith('@')) delete options[name]
  }

  return {resource, key, count: Boolean(tree.count), options, binds}
}
