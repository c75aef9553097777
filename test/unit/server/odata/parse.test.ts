import {strict as assert} from 'node:assert'

import {HttpError} from '../../../../src/server/http-errors.js'
import {normaliseODataUrl, parseODataUrl} from '../../../../src/server/odata/parse.js'

describe('parseODataUrl', () => {
  it('accepts option values percent-encoded whole, as clients send them', () => {
    const filter = encodeURIComponent("belongs_to__application/slug eq 'acme/fleet' and note eq '100% & more'")
    const parsed = parseODataUrl(`/device?$filter=${filter}&$select=${encodeURIComponent('id,uuid')}`)
    assert.equal(parsed.resource.name, 'device')
    assert.deepEqual(
      parsed.binds.map(([, value]) => value),
      ['acme/fleet', '100% & more'],
    )
    assert.deepEqual(
      (parsed.options.$select as {properties: Array<{name: string}>}).properties.map((property) => property.name),
      ['id', 'uuid'],
    )
  })

  it('reads keys: numeric, named and composite', () => {
    assert.deepEqual(parseODataUrl('/device(12)').key, {id: {bind: 0}})
    assert.deepEqual(Object.keys(parseODataUrl("/device(uuid='abc')").key ?? {}), ['uuid'])
    assert.deepEqual(Object.keys(parseODataUrl(`/service(application=5,service_name=${encodeURIComponent("'main'")})`).key ?? {}), ['application', 'service_name'])
  })

  it('knows the release_image alias and $count', () => {
    const parsed = parseODataUrl('/release_image/$count')
    assert.equal(parsed.resource.name, 'image__is_part_of__release')
    assert.equal(parsed.count, true)
  })

  it('refuses malformed URLs with 400 and unknown resources with 404', () => {
    const statusOf = (url: string) => {
      try {
        parseODataUrl(url)
      } catch (error) {
        return (error as HttpError).statusCode
      }

      return 200
    }

    assert.equal(statusOf('/device?$filter=uuid eq'), 400)
    assert.equal(statusOf('/device?$filter=%E0%A4%A'), 400)
    assert.equal(statusOf('/device(1)/belongs_to__application'), 400)
    assert.equal(statusOf('/password_hash'), 404)
  })

  it('re-escapes only what the parser decodes itself', () => {
    assert.equal(normaliseODataUrl("/a?$filter=x%20eq%20'%25%26'"), "/a?$filter=x eq '%25%26'")
  })
})
