import {strict as assert} from 'node:assert'

import {FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

/**
 * Attacks on the pine API's cost: one request must never hang the server or grow its memory without bound. Nested
 * `$expand` through shared rows (a fleet's devices, each device's fleet, its devices again…) grew exponentially
 * before the limits of src/server/odata/limits.ts: 60 levels blocked the event loop for good.
 */
const EXPAND_DEPTH = 6
const RESPONSE_ROWS = 100_000
/** Time a refused request may take: far below what the attacks took before the limits. */
const REFUSAL_DEADLINE_MS = 5000

/** `application?$expand=owns__device($expand=belongs_to__application($expand=owns__device(…)))`, `levels` deep. */
function cyclicExpand(levels: number, deviceSelect = '', fleetSelect = deviceSelect): string {
  let expand = ''
  for (let level = levels; level >= 1; level--) {
    const navigation = level % 2 === 1 ? 'owns__device' : 'belongs_to__application'
    const options = [level % 2 === 1 ? deviceSelect : fleetSelect, expand ? `$expand=${expand}` : ''].filter(Boolean).join(';')
    expand = options ? `${navigation}(${options})` : navigation
  }

  return expand
}

describe('security: pine requests have bounded cost (real server)', function () {
  this.timeout(120_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  let fleet: {id: number}

  before(async () => {
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    fleet = await api.createFleet(token, 'limits')
    const deviceType = (await api.call('GET', `/v7/device_type?$select=id&$filter=slug eq 'raspberrypi4-64'`)).json().d[0].id
    for (let index = 0; index < 2; index++) await api.created(token, 'device', {belongs_to__application: fleet.id, is_of__device_type: deviceType})
  })

  after(async () => {
    await server?.stop()
  })

  async function refused(path: string, pattern: RegExp): Promise<void> {
    const started = Date.now()
    const answer = await api.call('GET', path, {token, timeoutMs: REFUSAL_DEADLINE_MS})
    assert.equal(answer.status, 400, answer.body.slice(0, 500))
    assert.match(answer.json(), pattern)
    assert.ok(Date.now() - started < REFUSAL_DEADLINE_MS)
    await api.assertResponsive()
  }

  it('refuses a 60-level cyclic $expand at once, naming the depth limit, and keeps answering', async () => {
    await refused(`/v7/application?$select=id&$expand=${cyclicExpand(60)}`, /\$expand.*6 levels/)
  })

  it('refuses one level past the limit, and answers exactly at it', async () => {
    await refused(`/v7/application?$select=id&$expand=${cyclicExpand(EXPAND_DEPTH + 1, '$select=id')}`, /\$expand.*6 levels/)
    const answer = await api.call('GET', `/v7/application(${fleet.id})?$select=id&$expand=${cyclicExpand(EXPAND_DEPTH, '$select=id')}`, {token})
    assert.equal(answer.status, 200, answer.body)
    assert.equal(answer.json().d[0].owns__device[0].belongs_to__application[0].owns__device.length, 2)
  })

  it("answers the deepest $expand balena's SDK sends (a fleet's devices with their service details, 4 levels)", async () => {
    const serviceDetails = 'image_install($select=id,status;$expand=installs__image($select=id;$expand=is_a_build_of__service($select=id,service_name)),is_provided_by__release($select=id,commit;$expand=belongs_to__application($select=slug)))'
    const answer = await api.call('GET', `/v7/application(${fleet.id})?$select=id&$expand=owns__device($select=id,uuid;$expand=${serviceDetails})`, {token})
    assert.equal(answer.status, 200, answer.body)
    assert.equal(answer.json().d[0].owns__device.length, 2)
  })

  it('refuses too many expansions in one request', async () => {
    const many = Array.from({length: 60}, () => 'owns__device($select=id)').join(',')
    await refused(`/v7/application?$select=id&$expand=${many}`, /\$expand.*50/)
  })

  it('refuses an answer of more rows than the cap, counting every expanded copy, in bounded time', async () => {
    // 40 devices, 6 levels: about 2 × 40³ = 128,000 rows as sent, from 81 rows in the database.
    const deviceType = (await api.call('GET', `/v7/device_type?$select=id&$filter=slug eq 'raspberrypi4-64'`)).json().d[0].id
    const crowd = await api.createFleet(token, 'crowd')
    for (let index = 0; index < 40; index++) await api.created(token, 'device', {belongs_to__application: crowd.id, is_of__device_type: deviceType})
    await refused(`/v7/application(${crowd.id})?$select=id&$expand=${cyclicExpand(EXPAND_DEPTH, '$select=id')}`, new RegExp(`more than ${RESPONSE_ROWS} rows`))
  })

  it('refuses an answer larger than the byte cap, counting every expanded copy', async () => {
    const deviceType = (await api.call('GET', `/v7/device_type?$select=id&$filter=slug eq 'raspberrypi4-64'`)).json().d[0].id
    const heavy = await api.createFleet(token, 'heavy')
    const note = 'n'.repeat(900_000)
    for (let index = 0; index < 5; index++) await api.created(token, 'device', {belongs_to__application: heavy.id, is_of__device_type: deviceType, note})
    // 5 + 25 + 125 copies of a 900 KB note: about 140 MB as sent.
    await refused(`/v7/application(${heavy.id})?$select=id&$expand=${cyclicExpand(EXPAND_DEPTH, '$select=id,note', '$select=id')}`, /more than 64 MiB/)
  })

  it('refuses $filter paths through navigations nested deeper than the limit', async () => {
    let condition = 'd7/id eq 1'
    for (let level = 6; level >= 1; level--) condition = `d${level}/belongs_to__application/owns__device/any(d${level + 1}:${condition})`
    await refused(`/v7/application?$select=id&$filter=owns__device/any(d1:${condition})`, /\$filter.*navigations/)
  })

  it('refuses $filter expressions nested deeper than the limit', async () => {
    const condition = `${'not ('.repeat(200)}id eq 1${')'.repeat(200)}`
    await refused(`/v7/device?$select=id&$filter=${condition}`, /\$filter.*nested/)
  })

  for (const option of ['$top', '$skip']) {
    it(`refuses ${option} beyond what a whole number can hold with a 400 naming it`, async () => {
      await refused(`/v7/device?$select=id&${option}=18446744073709551617`, new RegExp(`\\${option} must be a whole number`))
      await refused(`/v7/application?$select=id&$expand=owns__device($select=id;${option}=99999999999999999999)`, new RegExp(`\\${option} must be a whole number`))
      const answer = await api.call('GET', `/v7/device?$select=id&${option}=-1`, {token})
      assert.equal(answer.status, 400, answer.body)
    })
  }

  it('still pages with ordinary $top and $skip', async () => {
    const answer = await api.call('GET', `/v7/device?$select=id&$filter=belongs_to__application eq ${fleet.id}&$top=1&$skip=1`, {token})
    assert.equal(answer.status, 200, answer.body)
    assert.equal(answer.json().d.length, 1)
  })
})
