import {strict as assert} from 'node:assert'

import odataParser from '@balena/odata-parser'

import {odataValue, pineUrl} from '../../../src/sdk/pine.js'

/** The text literals pinejs's own parser reads from a URL as the client puts it on the wire (through WHATWG URL). */
function literalsOnTheWire(path: string): unknown[] {
  const wire = new URL(path, 'http://127.0.0.1')
  const {binds} = odataParser.parse(`${wire.pathname}${wire.search}`.replace(/^\/v7/, ''))
  return binds.map(([, value]) => value)
}

/** Deterministic text of every kind: ASCII punctuation, quotes, percent signs, spaces, non-Latin scripts and emoji. */
function* awkwardTexts(count: number): Generator<string> {
  const alphabet = [..." !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~azAZ09", 'é', 'ß', '中', '😀', '\t', '\n', '%27', '%2C', "''"]
  let seed = 7
  for (let index = 0; index < count; index++) {
    let text = ''
    for (let length = 1 + (index % 12); length > 0; length--) {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
      text += alphabet[seed % alphabet.length]
    }

    yield text
  }
}

describe('pine URLs', () => {
  it('writes OData as pinejs-client does: structure as it is, spaces as %20, literal contents percent-encoded', () => {
    assert.equal(odataValue("it's a/b & c"), "'it''s%20a%2Fb%20%26%20c'")
    assert.equal(odataValue(5), '5')
    assert.equal(odataValue(true), 'true')
    assert.equal(odataValue(null), 'null')
    assert.equal(
      pineUrl('device', {
        $select: ['id', 'uuid'],
        $filter: `belongs_to__application/any(a:a/slug eq ${odataValue('acme/fleet')})`,
        $expand: 'is_of__device_type($select=slug;$filter=slug ne null)',
        $orderby: 'device_name asc',
        $top: 2,
      }),
      "/v7/device?$select=id,uuid&$filter=belongs_to__application/any(a:a/slug%20eq%20'acme%2Ffleet')&$expand=is_of__device_type($select=slug;$filter=slug%20ne%20null)&$orderby=device_name%20asc&$top=2",
    )
    assert.equal(pineUrl('service', {}, {key: {application: 5, service_name: 'main app'}}), "/v7/service(application=5,service_name='main%20app')")
    assert.equal(pineUrl('device', {$filter: 'id gt 0'}, {count: true}), '/v7/device/$count?$filter=id%20gt%200')
  })

  it('carries any text in a literal through pinejs’s parser unchanged', () => {
    for (const text of awkwardTexts(400)) {
      assert.deepEqual(literalsOnTheWire(pineUrl('device', {$filter: `note eq ${odataValue(text)}`})), [text], JSON.stringify(text))
      assert.deepEqual(literalsOnTheWire(pineUrl('device', {}, {key: {uuid: text}})), [text], JSON.stringify(text))
    }

    assert.deepEqual(literalsOnTheWire(pineUrl('device', {$filter: `note eq ${odataValue('a\uD800b')}`})), ['a\uFFFDb'], 'a lone surrogate')
  })

  it('refuses option text a URL cannot carry, such as a literal written without odataValue', () => {
    assert.throws(() => pineUrl('device', {$filter: "note eq 'fish & chips'"}), /pine option \$filter holds "&".*odataValue/)
    assert.throws(() => pineUrl('device', {$filter: "note eq 'a#b'"}), /"#"/)
    assert.throws(() => pineUrl('device', {$filter: "note eq 'café'"}), /"é"/)
  })
})
