import {strict as assert} from 'node:assert'

import {HttpError} from '../../../../src/server/http-errors.js'
import {parseODataUrl} from '../../../../src/server/odata/parse.js'

describe('parseODataUrl', () => {
  it('reads URLs as pinejs-client writes them: structure as it is, literal contents percent-encoded', () => {
    const parsed = parseODataUrl("/device?$filter=belongs_to__application/slug%20eq%20'acme%2Ffleet'%20and%20note%20eq%20%27100%25%20%26%20o''brien%27&$select=id,uuid")
    assert.equal(parsed.resource.name, 'device')
    assert.deepEqual(
      parsed.binds.map(([, value]) => value),
      ['acme/fleet', "100% & o'brien"],
    )
    assert.deepEqual(
      (parsed.options.$select as {properties: Array<{name: string}>}).properties.map((property) => property.name),
      ['id', 'uuid'],
    )
  })

  it("refuses OData's own characters percent-encoded, with pinejs's 400 Malformed url naming the URL", () => {
    const refusal = (url: string) => {
      try {
        parseODataUrl(url, '/v7')
      } catch (error) {
        return [(error as HttpError).statusCode, (error as HttpError).message]
      }

      return [200, '']
    }

    for (const encoded of ['%2C', '%28', '%29', '%3D', '%2F', '%3A', '%3B']) {
      const url = `/device?$select=id${encoded}uuid`
      assert.deepEqual(refusal(url), [400, `Malformed url: '/v7${url}'`], encoded)
    }

    const wholeOption = `/device?$filter=${encodeURIComponent("startswith(uuid,'a')")}`
    assert.deepEqual(refusal(wholeOption), [400, `Malformed url: '/v7${wholeOption}'`])
    assert.deepEqual(refusal('/device%28uuid=%27a%27%29'), [400, "Malformed url: '/v7/device%28uuid=%27a%27%29'"])
    assert.deepEqual(refusal('/device?apikey=s3cret&$select=id%2Cuuid'), [400, "Malformed url: '/v7/device?apikey=<hidden>&$select=id%2Cuuid'"])
  })

  it('reads keys: numeric, named and composite', () => {
    assert.deepEqual(parseODataUrl('/device(12)').key, {id: {bind: 0}})
    assert.deepEqual(Object.keys(parseODataUrl("/device(uuid='abc')").key ?? {}), ['uuid'])
    assert.deepEqual(Object.keys(parseODataUrl("/service(application=5,service_name=%27main%27)").key ?? {}), ['application', 'service_name'])
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
})
