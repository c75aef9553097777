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

function decode(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    throw badRequest(`malformed percent-encoding in "${text}"`)
  }
}

/**
 * The parser reads the URL's own syntax but does not undo the percent-encoding clients apply to whole option values
 * (`%2F`, `%27`, `%24`…), so each part is decoded here and only `%` and `&` are re-escaped: inside quoted strings the
 * parser decodes those itself, and nowhere else may they appear.
 */
export function normaliseODataUrl(url: string): string {
  const questionMark = url.indexOf('?')
  const pathPart = questionMark === -1 ? url : url.slice(0, questionMark)
  const queryPart = questionMark === -1 ? '' : url.slice(questionMark + 1)
  const reescape = (text: string) => text.replaceAll('%', '%25').replaceAll('&', '%26')
  const path = reescape(decode(pathPart))
  const parameters = queryPart
    .split('&')
    .filter((parameter) => parameter !== '')
    .map((parameter) => {
      const equals = parameter.indexOf('=')
      if (equals === -1) return `${reescape(decode(parameter))}=`
      return `${reescape(decode(parameter.slice(0, equals)))}=${reescape(decode(parameter.slice(equals + 1)))}`
    })
  return parameters.length > 0 ? `${path}?${parameters.join('&')}` : path
}

/** Parses a pine URL relative to the API root (`/device(1)?$select=uuid`), naming what is wrong when it cannot. */
export function parseODataUrl(url: string): ParsedRequest {
  let parsed: {tree: ODataQuery; binds: ODataBinds}
  try {
    parsed = odataParser.parse(normaliseODataUrl(url), {startRule: 'ProcessRule', rule: 'OData'})
  } catch (error) {
    throw badRequest(`malformed OData URL: ${(error as Error).message}`)
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
