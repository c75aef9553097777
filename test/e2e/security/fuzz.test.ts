import {strict as assert} from 'node:assert'

import {type Answer, FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

/**
 * Bounded fuzzing of the pine URLs and the JSON bodies every route takes: random and mutated requests from a fixed
 * seed, a fixed count, against the real server. No answer may be a 500 or carry SQL text; the server keeps answering.
 */
const SEED = 0x5eed_f1a7
const URL_COUNT = 600
const BODY_COUNT = 300
const DEADLINE_MS = 30_000
const SQL_TEXT = /sqlite|syntax error|select |from "|no such (column|table)|constraint failed/i

/** mulberry32: a small deterministic generator, so a failure replays with the same seed. */
function generator(seed: number): () => number {
  let state = seed
  return () => {
    state = (state + 0x6d_2b_79_f5) | 0
    let mixed = Math.imul(state ^ (state >>> 15), 1 | state)
    mixed = (mixed + Math.imul(mixed ^ (mixed >>> 7), 61 | mixed)) ^ mixed
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4_294_967_296
  }
}

const RESOURCES = ['device', 'application', 'release', 'device_tag', 'application_environment_variable', 'device_config_variable', 'service', 'image', 'organization', 'user', 'api_key', 'device_type', 'service_install', 'image_install', 'nope', 'release_image']
const FIELDS = ['id', 'uuid', 'device_name', 'is_online', 'belongs_to__application', 'app_name', 'slug', 'created_at', 'status', 'value', 'name', 'tag_key', 'note', 'commit', 'nope', 'actor']
const NAVIGATIONS = ['owns__device', 'belongs_to__application', 'is_of__device_type', 'device_tag', 'owns__release', 'organization', 'image_install', 'is_running__release', 'release_tag', 'service', 'nope']
const VALUES = ["'x'", "'it''s'", "''", '1', '-1', '0', '3.5', '1e308', '18446744073709551617', 'null', 'true', 'false', "'é漢字🚀'", "datetime'2024-01-01T00:00:00Z'", "'%27'", "'%'", "'_'", "'\\'", '(1,2,3)', '()']
const OPERATORS = ['eq', 'ne', 'gt', 'ge', 'lt', 'le', 'in', 'add', 'has', 'sub']
const FUNCTIONS = ['startswith', 'endswith', 'contains', 'substringof', 'tolower', 'toupper', 'length', 'trim', 'concat', 'nope']
const JUNK = ['(', ')', "'", ',', '/', '$', '=', ';', ':', '%', '%00', '%ZZ', '&', '?', ' ', '*', '@', '#', '\u0000', 'é', '..', '$count', '$value']

describe('security: fuzzing pine URLs and JSON bodies never gives a 500 or SQL text (real server)', function () {
  this.timeout(120_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  let ids: Record<string, number>

  before(async () => {
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'fuzz')
    const release = await api.createRelease(token, fleet.id, 'b'.repeat(32))
    const deviceType = (await api.call('GET', `/v7/device_type?$select=id&$filter=slug eq 'raspberrypi4-64'`)).json().d[0].id
    const device = await api.created(token, 'device', {belongs_to__application: fleet.id, is_of__device_type: deviceType})
    await api.created(token, 'device_tag', {device: device.id, tag_key: 'k', value: 'v'})
    ids = {application: fleet.id, release: release.id, device: device.id, device_type: deviceType}
  })

  after(async () => {
    await server?.stop()
  })

  function pick<T>(random: () => number, items: T[]): T {
    return items[Math.floor(random() * items.length)]
  }

  function filterOf(random: () => number, depth: number): string {
    const choice = random()
    if (depth > 3 || choice < 0.3) return `${pick(random, FIELDS)} ${pick(random, OPERATORS)} ${pick(random, VALUES)}`
    if (choice < 0.45) return `(${filterOf(random, depth + 1)}) ${pick(random, ['and', 'or'])} ${filterOf(random, depth + 1)}`
    if (choice < 0.55) return `not ${filterOf(random, depth + 1)}`
    if (choice < 0.7) return `${pick(random, NAVIGATIONS)}/${pick(random, ['any', 'all'])}(x:x/${filterOf(random, depth + 1)})`
    if (choice < 0.8) return `${pick(random, FUNCTIONS)}(${pick(random, FIELDS)},${pick(random, VALUES)})`
    if (choice < 0.9) return `${pick(random, NAVIGATIONS)}/${pick(random, FIELDS)} ${pick(random, OPERATORS)} ${pick(random, VALUES)}`
    return `${pick(random, NAVIGATIONS)}/$count ${pick(random, OPERATORS)} ${pick(random, VALUES)}`
  }

  function expandOf(random: () => number, depth: number): string {
    const navigation = pick(random, NAVIGATIONS)
    if (depth > 3 || random() < 0.4) return random() < 0.2 ? `${navigation}/$count` : navigation
    const options = [`$select=${pick(random, FIELDS)}`, `$filter=${filterOf(random, 2)}`, `$expand=${expandOf(random, depth + 1)}`, `$top=${pick(random, VALUES)}`, `$orderby=${pick(random, FIELDS)} desc`]
    return `${navigation}(${options.filter(() => random() < 0.5).join(';')})`
  }

  function urlOf(random: () => number): string {
    const resource = pick(random, RESOURCES)
    const key = pick(random, ['', '', '(1)', "(uuid='x')", '(-1)', '(99999999999999999999)', "('a''b')", '(1)/$count', '/$count', '(id=1,name=2)'])
    const options = [
      `$filter=${filterOf(random, 0)}`,
      `$expand=${expandOf(random, 0)}`,
      `$select=${[pick(random, FIELDS), pick(random, FIELDS)].join(',')}`,
      `$orderby=${pick(random, [...FIELDS, ...NAVIGATIONS.map((navigation) => `${navigation}/id`)])} ${pick(random, ['asc', 'desc', 'up'])}`,
      `$top=${pick(random, VALUES)}`,
      `$skip=${pick(random, VALUES)}`,
      `${pick(random, ['$format', '$search', '$inlinecount', 'apikey', '@x', '$nope'])}=${pick(random, VALUES)}`,
    ].filter(() => random() < 0.45)
    let url = `/${resource}${key}${options.length > 0 ? `?${options.join('&')}` : ''}`
    for (let mutation = random() < 0.5 ? 0 : Math.floor(random() * 4); mutation > 0; mutation--) {
      const at = Math.floor(random() * url.length)
      url = random() < 0.5 ? url.slice(0, at) + pick(random, JUNK) + url.slice(at) : url.slice(0, at) + url.slice(at + 1)
    }

    return `/v7${encodeURI(url.replaceAll(/[\uD800-\uDFFF]/gu, '')).replaceAll('#', '%23')}`
  }

  function valueOf(random: () => number, depth = 0): unknown {
    const choice = random()
    if (choice < 0.15) return Math.floor(random() * 10)
    if (choice < 0.25) return pick(random, [-1, 1.5, 1e308, -0, 2 ** 64, Number.MAX_SAFE_INTEGER + 2])
    if (choice < 0.45) return pick(random, ['', 'x', "it's", 'é漢字🚀', '\u0000', 'a'.repeat(2000), '2024-01-01T00:00:00Z', 'BALENA_X', 'not a date'])
    if (choice < 0.55) return random() < 0.5
    if (choice < 0.65) return null
    if (choice < 0.75 && depth < 3) return [valueOf(random, depth + 1), valueOf(random, depth + 1)]
    if (choice < 0.85 && depth < 3) return {__id: valueOf(random, depth + 1), [pick(random, FIELDS)]: valueOf(random, depth + 1)}
    return ids[pick(random, Object.keys(ids))]
  }

  function bodyOf(random: () => number): unknown {
    if (random() < 0.1) return pick(random, [null, [], 'text', 5, [{}]])
    const body: Record<string, unknown> = {}
    const fields = [...FIELDS, 'device', 'application', 'release', 'is_of__device_type', 'device_type', 'username', 'password', 'name', 'expiryDate', 'appId', 'version', 'uuid', 'api_key', 'data', 'method', 'deviceId']
    for (let count = Math.floor(random() * 5); count >= 0; count--) body[pick(random, fields)] = valueOf(random)
    return body
  }

  function requestOf(random: () => number): {method: 'POST' | 'PATCH'; path: string} {
    if (random() < 0.6) {
      const resource = pick(random, RESOURCES)
      return random() < 0.5 ? {method: 'POST', path: `/v7/${resource}`} : {method: 'PATCH', path: `/v7/${resource}(${pick(random, Object.values(ids))})`}
    }

    return pick(random, [
      {method: 'POST', path: '/login_'},
      {method: 'POST', path: '/device/register'},
      {method: 'PATCH', path: '/device/v3/state'},
      {method: 'POST', path: '/api-key/user/full'},
      {method: 'POST', path: `/api-key/application/${ids.application}/provisioning`},
      {method: 'POST', path: '/download-config'},
      {method: 'POST', path: '/supervisor/v1/blink'},
      {method: 'POST', path: `/device/v2/${'0'.repeat(32)}/logs`},
    ] as Array<{method: 'POST' | 'PATCH'; path: string}>)
  }

  /** Sends every request (a few at a time), and returns the ones answered with a 500 or with SQL text. */
  async function failures(requests: Array<() => Promise<Answer>>, describe: (index: number) => string): Promise<string[]> {
    const found: string[] = []
    let next = 0
    const worker = async () => {
      while (next < requests.length) {
        const index = next++
        const answer = await requests[index]()
        if (answer.status >= 500 || (answer.status >= 400 && SQL_TEXT.test(answer.body))) found.push(`${answer.status} ${answer.body.slice(0, 200)} ← ${describe(index)}`)
      }
    }

    await Promise.all([worker(), worker(), worker(), worker()])
    return found
  }

  it(`answers ${URL_COUNT} random and mutated OData URLs without a 500 or SQL text, and keeps answering`, async () => {
    const random = generator(SEED)
    const started = Date.now()
    const urls = Array.from({length: URL_COUNT}, () => urlOf(random))
    const found = await failures(
      urls.map((url) => () => api.call('GET', url, {token, timeoutMs: 5000})),
      (index) => `GET ${urls[index]}`,
    )
    assert.deepEqual(found, [])
    assert.ok(Date.now() - started < DEADLINE_MS, `took ${Date.now() - started} ms`)
    await api.assertResponsive()
  })

  it(`answers ${BODY_COUNT} random JSON bodies to pine and the other JSON routes without a 500 or SQL text`, async () => {
    const random = generator(SEED + 1)
    const started = Date.now()
    const requests = Array.from({length: BODY_COUNT}, () => ({...requestOf(random), body: bodyOf(random)}))
    const found = await failures(
      requests.map(({method, path, body}) => () => api.call(method, path, {token, body: JSON.stringify(body), headers: {'content-type': 'application/json'}, timeoutMs: 5000})),
      (index) => `${requests[index].method} ${requests[index].path} ${JSON.stringify(requests[index].body).slice(0, 300)}`,
    )
    assert.deepEqual(found, [])
    assert.ok(Date.now() - started < DEADLINE_MS, `took ${Date.now() - started} ms`)
    await api.assertResponsive()
  })
})
