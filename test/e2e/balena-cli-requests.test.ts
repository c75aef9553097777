import {strict as assert} from 'node:assert'
import {existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const TYPE = 'raspberrypi4-64'
const UUID = 'c0ffee00c0ffee00c0ffee00c0ffee00'

/**
 * Requests the official balena-cli (22.5.5, through balena-sdk) sent to a flotilla server and that the server
 * once refused; each URL is copied from what the CLI sent (scripts/balena-cli-compat.sh runs the CLI itself).
 */
describe('requests of the official balena-cli', function () {
  this.timeout(60_000)
  let server: TestServer
  let api: FleetApi
  let imagesDir: string
  let token: string
  let fleet: {id: number; slug: string; uuid: string}
  let device: {id: number; uuid: string; api_key: string}

  before(async () => {
    imagesDir = mkdtempSync(path.join(tmpdir(), 'flotilla-images-'))
    mkdirSync(path.join(imagesDir, TYPE, '6.0.13'), {recursive: true})
    writeFileSync(path.join(imagesDir, TYPE, '6.0.13', 'balena.img'), 'image\n')
    server = await startServer({args: ['--images-dir', imagesDir]})
    api = new FleetApi(server.url)
    token = await api.login(server.admin.email, server.admin.password)
    fleet = await api.createFleet(token, 'clifleet')
    device = await api.registerDevice(token, fleet.id, UUID)
  })

  after(async () => {
    await server?.stop()
    rmSync(imagesDir, {recursive: true, force: true})
  })

  async function get(url: string): Promise<any[]> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const answer = await api.call('GET', url, {token})
    assert.equal(answer.status, 200, `${url}: ${answer.body}`)
    return answer.json().d
  }

  it('finds a device type by its own slug as an alias (fleet create --type)', async () => {
    const found = await get(`/v7/device_type?$orderby=name asc&$select=id&$top=1&$filter=device_type_alias/any(dta:dta/is_referenced_by__alias eq '${TYPE}')`)
    assert.equal(found.length, 1)
    const [{slug}] = await get(`/v7/device_type(${found[0].id})?$select=slug`)
    assert.equal(slug, TYPE)
    // An alias of its own stays out of /device-types/v1, as on balenaCloud.
    const types = (await api.call('GET', '/device-types/v1')).json()
    assert.deepEqual(types.find((type: {slug: string}) => type.slug === TYPE).aliases, [])
  })

  it('lists the device types with published OS images (device-type list)', async () => {
    const types = await get(
      "/v7/device_type?$orderby=name asc&$select=slug,name&$filter=is_default_for__application/any(idfa:idfa/is_host eq true and idfa/is_archived eq false and idfa/owns__release/any(r:r/status eq 'success' and r/is_final eq true and r/is_invalidated eq false))&$expand=is_of__cpu_architecture($select=slug),device_type_alias($select=is_referenced_by__alias;$orderby=is_referenced_by__alias asc)",
    )
    assert.deepEqual(
      types.map((type) => [type.slug, type.is_of__cpu_architecture[0].slug, type.device_type_alias.map((alias: {is_referenced_by__alias: string}) => alias.is_referenced_by__alias)]),
      [[TYPE, 'aarch64', [TYPE]]],
    )
  })

  it('reads every field of device info (device <uuid>)', async () => {
    const [device] = await get(
      `/v7/device(uuid='${UUID}')?$select=device_name,id,overall_status,is_online,ip_address,mac_address,last_connectivity_event,uuid,supervisor_version,is_web_accessible,note,os_version,memory_usage,memory_total,public_address,storage_block_device,storage_usage,storage_total,cpu_usage,cpu_temp,cpu_id,is_undervolted&$expand=belongs_to__application($select=app_name,slug),is_of__device_type($select=slug),is_running__release($select=commit)`,
    )
    assert.equal(device.uuid, UUID)
    assert.equal(device.storage_block_device, null)
    assert.equal(device.cpu_id, null)
    assert.equal(device.belongs_to__application[0].slug, fleet.slug)
  })

  it("lists OS versions with their releases' known issues (os versions)", async () => {
    const hostApps = await get(
      `/v7/application?$select=is_for__device_type&$expand=application_tag($select=tag_key,value),is_for__device_type($select=slug),owns__release($select=id,known_issue_list,raw_version,variant,phase;$expand=release_tag($select=tag_key,value);$filter=is_final eq true and is_invalidated eq false and status eq 'success')&$filter=is_host eq true and is_for__device_type/any(dt:dt/slug in ('${TYPE}'))`,
    )
    assert.deepEqual(
      hostApps.flatMap((app) => app.owns__release.map((release: {raw_version: string; known_issue_list: string | null}) => [release.raw_version, release.known_issue_list])),
      [['6.0.13', null]],
    )
  })

  it("tells a fleet's type (fleet rename, build, deploy)", async () => {
    const [renamed] = await get(
      `/v7/application?$filter=is_directly_accessible_by__user/any(dau:1 eq 1) and (slug eq '${fleet.slug}' or uuid eq '${fleet.slug}')&$select=id,app_name,slug&$expand=application_type($select=slug)`,
    )
    assert.deepEqual(renamed.application_type, [{slug: 'microservices'}])
    const [built] = await get(`/v7/application(${fleet.id})?$select=id&$expand=application_type($select=name,slug,supports_multicontainer)`)
    assert.deepEqual(built.application_type, [{name: 'Microservices', slug: 'microservices', supports_multicontainer: true}])
    // The type is the server's to say.
    const changed = await api.call('PATCH', `/v7/application(${fleet.id})`, {token, json: {application_type: 2}})
    assert.equal(changed.status, 400, changed.body)
  })

  /** The device reports once (it is online, running supervisor 17), as a supervisor does. */
  async function reportOnline(): Promise<void> {
    const report = await api.call('PATCH', '/device/v3/state', {token: device.api_key, json: {[UUID]: {status: 'Idle', supervisor_version: '17.0.0', api_port: 48484}}})
    assert.equal(report.status, 200, report.body)
  }

  /** The actions waiting for the device, as its agent collects them. */
  async function actionsOfDevice(): Promise<unknown[]> {
    return (await api.call('GET', `/device/v3/${UUID}/actions`, {token: device.api_key})).json()
  }

  it('tracks the newest release that passed its tests (fleet track-latest)', async () => {
    const tested = await api.createRelease(token, fleet.id, 'a'.repeat(32))
    const untested = await api.createRelease(token, fleet.id, 'b'.repeat(32))
    await api.patch(token, `release(${untested.id})`, {is_passing_tests: false})
    await api.patch(token, `application(${fleet.id})`, {should_track_latest_release: false, should_be_running__release: null})
    const [found] = await get(
      `/v7/application(${fleet.id})?$select=id&$expand=owns__release($select=id;$top=1;$filter=is_final eq true and is_passing_tests eq true and is_invalidated eq false and status eq 'success';$orderby=created_at desc)`,
    )
    assert.deepEqual(found.owns__release, [{id: tested.id}])
    await api.patch(token, `application(${fleet.id})`, {should_track_latest_release: true, should_be_running__release: tested.id})
    const [tracking] = await get(`/v7/application(${fleet.id})?$select=should_track_latest_release,should_be_running__release`)
    assert.deepEqual([tracking.should_track_latest_release, tracking.should_be_running__release], [true, {__id: tested.id}])
  })

  it('restarts the services of every online device of a fleet (fleet restart), and no fleet the caller cannot see', async () => {
    await reportOnline()
    const restarted = await api.call('POST', `/application/${fleet.id}/restart`, {token})
    assert.equal(restarted.status, 200, restarted.body)
    assert.deepEqual(await actionsOfDevice(), [{action: 'restart', appId: fleet.id}])
    const unknown = await api.call('POST', '/application/999999/restart', {token})
    assert.equal(unknown.status, 404, unknown.body)
  })

  it('stops and starts a service by its image id through the supervisor proxy (device stop-service, start-service)', async () => {
    await reportOnline()
    for (const verb of ['stop', 'start']) {
      const answer = await api.call('POST', `/supervisor/v2/applications/${fleet.id}/${verb}-service`, {token, json: {deviceId: device.id, appId: fleet.id, data: {appId: fleet.id, imageId: 7}}})
      assert.equal(answer.status, 200, answer.body)
    }

    assert.deepEqual(await actionsOfDevice(), [
      {action: 'stop-service', appId: fleet.id, imageId: 7},
      {action: 'start-service', appId: fleet.id, imageId: 7},
    ])
  })

  it("answers the supervisor's ping and status through the proxy (balena-sdk device.ping, getSupervisorState)", async () => {
    await reportOnline()
    const ping = await api.call('POST', '/supervisor/ping', {token, json: {method: 'GET', deviceId: device.id, appId: fleet.id}})
    assert.deepEqual([ping.status, ping.body], [200, 'OK'])
    const status = await api.call('POST', '/supervisor/v1/device', {token, json: {uuid: UUID, method: 'GET'}})
    assert.equal(status.status, 200, status.body)
    assert.deepEqual([status.json().supervisor_version, status.json().api_port, status.json().status], ['17.0.0', 48484, 'Idle'])
  })

  it('deactivates a device, which then reads as inactive (device deactivate)', async () => {
    const other = await api.registerDevice(token, fleet.id, 'd'.repeat(32))
    const [before] = await get(`/v7/device(uuid='${other.uuid}')?$select=is_active,is_connected_to_vpn,overall_status`)
    assert.deepEqual(before, {is_active: true, is_connected_to_vpn: false, overall_status: 'configuring'})
    const patched = await api.call('PATCH', `/v7/device?$filter=uuid in ('${other.uuid}')`, {token, json: {is_active: false}})
    assert.equal(patched.status, 200, patched.body)
    const [after] = await get(`/v7/device(uuid='${other.uuid}')?$select=is_active,overall_status`)
    assert.deepEqual(after, {is_active: false, overall_status: 'inactive'})
  })

  it("reads a device's target state in balena's v2 shape (balena-sdk getSupervisorTargetState)", async () => {
    const release = await api.createRelease(token, fleet.id, '1'.repeat(32))
    await api.patch(token, `device(${device.id})`, {is_pinned_on__release: release.id})
    const answer = await api.call('GET', `/device/v2/${UUID}/state`, {token})
    assert.equal(answer.status, 200, answer.body)
    const app = answer.json().local.apps[fleet.id]
    const [main] = await get(`/v7/service?$select=id&$filter=application eq ${fleet.id} and service_name eq 'main'`)
    assert.deepEqual([app.commit, app.releaseId, Object.keys(app.services)], ['1'.repeat(32), release.id, [String(main.id)]])
    assert.deepEqual([app.services[main.id].serviceName, app.services[main.id].imageId, app.services[main.id].running], ['main', release.imageId, true])
    assert.deepEqual(answer.json().dependent, {apps: {}, devices: {}})
    assert.equal((await api.call('GET', `/device/v2/${'f'.repeat(32)}/state`, {token})).status, 401)
  })

  it("reads a fleet's target state, its target or a release by commit, and no other user's fleet (balena-sdk getSupervisorTargetStateForApp)", async () => {
    const release = await api.createRelease(token, fleet.id, '2'.repeat(32))
    const read = (fleetUuid: string, releaseUuid = '', key = token) => api.call('GET', `/device/v3/fleet/${fleetUuid}/state/?releaseUuid=${releaseUuid}`, {token: key})
    const named = await read(fleet.uuid, '2'.repeat(32))
    assert.equal(named.status, 200, named.body)
    const state = named.json()[fleet.uuid]
    assert.equal(state.name, 'clifleet')
    assert.deepEqual(Object.keys(state.apps[fleet.uuid].releases), ['2'.repeat(32)])
    assert.equal(state.apps[fleet.uuid].releases['2'.repeat(32)].services.main.image_id, release.imageId)
    assert.equal((await read(fleet.uuid)).status, 200)
    assert.equal((await read(fleet.uuid, '9'.repeat(32))).status, 401, 'a commit the fleet has no successful release of')

    await server.addUser({email: 'mallory@example.com', username: 'mallory', password: 'mallory-password-1'})
    const mallory = await api.login('mallory', 'mallory-password-1')
    assert.equal((await read(fleet.uuid, '', mallory)).status, 401)
    assert.equal((await read(fleet.uuid, '2'.repeat(32), mallory)).status, 401)
  })

  it("expands a release's images through contains__image (balena-sdk release.get with image details)", async () => {
    const release = await api.createRelease(token, fleet.id, '3'.repeat(32))
    const [found] = await get(`/v7/release(${release.id})?$select=id&$expand=contains__image($select=id;$expand=image($select=id,is_stored_at__image_location;$expand=is_a_build_of__service($select=service_name)))`)
    assert.equal(found.contains__image.length, 1)
    const [{image: [image]}] = found.contains__image
    assert.deepEqual([image.id, image.is_stored_at__image_location, image.is_a_build_of__service[0].service_name], [release.imageId, release.location, 'main'])
    const [built] = await get(`/v7/image(${release.imageId})?$select=id&$expand=is_part_of__release($select=is_part_of__release)`)
    assert.deepEqual(built.is_part_of__release, [{is_part_of__release: {__id: release.id}}])
  })

  it('records where a device was and what it ran (balena-sdk device.history), and shows it only to its fleet', async () => {
    const since = new Date(Date.now() - 60_000).toISOString()
    const moved = await api.registerDevice(token, fleet.id, '5'.repeat(32))
    const other = await api.createFleet(token, 'historyfleet')
    await api.patch(token, `device(${moved.id})`, {belongs_to__application: other.id})
    const entries = await get(`/v7/device_history?$filter=created_at ge datetime'${since}' and uuid eq '${moved.uuid}'&$orderby=id asc`)
    assert.deepEqual(entries.map((entry) => [entry.belongs_to__application.__id, entry.tracks__device.__id, entry.end_timestamp === null]), [[fleet.id, moved.id, false], [other.id, moved.id, true]])
    assert.equal((await get(`/v7/device_history?$filter=tracks__device eq ${moved.id}`)).length, 2)
    assert.equal((await get(`/v7/device_history?$filter=belongs_to__application eq ${other.id}`)).length, 1)
    // The device reports the release it runs: a new period, once (the same report again changes nothing).
    const running = await api.createRelease(token, other.id, '6'.repeat(32))
    for (let report = 0; report < 2; report++) {
      const reported = await api.call('PATCH', '/device/v3/state', {token: moved.api_key, json: {[moved.uuid]: {os_version: 'balenaOS 6.0.13', apps: {[other.uuid]: {release_uuid: '6'.repeat(32)}}}}})
      assert.equal(reported.status, 200, reported.body)
    }

    const latest = await get(`/v7/device_history?$filter=tracks__device eq ${moved.id}&$orderby=id desc`)
    assert.deepEqual([latest.length, latest[0].is_running__release, latest[0].os_version, latest[0].end_timestamp], [3, {__id: running.id}, 'balenaOS 6.0.13', null])

    await server.addUser({email: 'eve@example.com', username: 'eve', password: 'eve-password-1'})
    const eve = await api.login('eve', 'eve-password-1')
    const peeking = await api.call('GET', `/v7/device_history?$filter=uuid eq '${moved.uuid}'`, {token: eve})
    assert.deepEqual([peeking.status, peeking.json().d], [200, []])
    const writing = await api.call('POST', '/v7/device_history', {token, json: {tracks__device: moved.id, uuid: moved.uuid}})
    assert.equal(writing.status, 401, 'the server alone writes the history')
  })

  it('tells the device URL base (balena-sdk config.getAll, device public-url) and each device type\'s config.json location (os configure)', async () => {
    const config = await api.call('GET', '/config')
    assert.equal(config.status, 200, config.body)
    assert.equal(config.json().deviceUrlsBase, new URL(server.url).hostname)
    const types = (await api.call('GET', '/device-types/v1')).json()
    assert.deepEqual(types.find((type: {slug: string}) => type.slug === TYPE).configuration, {config: {partition: {primary: 1}, path: '/config.json'}})
  })

  /** A multipart form as balena-sdk sends one (release-asset upload): its bytes and content type. */
  async function formOf(fields: Record<string, string>, file?: {name: string; type: string; content: Uint8Array<ArrayBuffer> | string}): Promise<{body: Buffer; headers: Record<string, string>}> {
    const form = new FormData()
    for (const [name, value] of Object.entries(fields)) form.append(name, value)
    if (file) form.append('asset', new Blob([file.content], {type: file.type}), file.name)
    const request = new Request('http://127.0.0.1/', {method: 'POST', body: form})
    return {body: Buffer.from(await request.arrayBuffer()), headers: {'content-type': request.headers.get('content-type') as string}}
  }

  it('uploads, lists, downloads and deletes release assets (release-asset upload, list, download, delete), stored in the database with their row (nothing on disk), downloaded with the token of their href', async () => {
    const release = await api.createRelease(token, fleet.id, '4'.repeat(32))
    const empty = await api.call('POST', '/v7/release_asset', {token, json: {release: release.id, asset_key: 'notes', asset: null}})
    assert.equal(empty.status, 201, empty.body)
    assert.equal(empty.json().asset, null)
    // Only the upload writes `asset`: a client may not point an asset's href anywhere through pine.
    const forged = {href: 'http://elsewhere.example/x', filename: 'x', content_type: 'text/html', size: 1}
    assert.equal((await api.call('POST', '/v7/release_asset', {token, json: {release: release.id, asset_key: 'forged', asset: forged}})).status, 400)
    assert.equal((await api.call('PATCH', `/v7/release_asset(${empty.json().id})`, {token, json: {asset: forged}})).status, 400)

    const content = JSON.stringify({bomFormat: 'CycloneDX'})
    const upload = await api.call('POST', '/v7/release_asset', {token, ...(await formOf({release: String(release.id), asset_key: '../../escape'}, {name: '../bom.json', type: 'application/json', content}))})
    assert.equal(upload.status, 201, upload.body)
    const {id, asset} = upload.json()
    assert.deepEqual([asset.filename, asset.content_type, asset.size], ['bom.json', 'application/json', content.length])
    assert.ok(!existsSync(path.join(server.dataDir, 'release-assets')) && !existsSync(path.join(server.dataDir, '..', 'bom.json')), 'nothing written to disk, whatever the key and file name say')

    const listed = await get(`/v7/release(${release.id})?$select=id&$expand=release_asset($orderby=id asc)`)
    assert.deepEqual(listed[0].release_asset.map((row: {asset_key: string}) => row.asset_key), ['notes', '../../escape'])
    // balena-sdk's release.asset.download fetches the href without credentials: its token lets it in.
    const href = new URL(asset.href)
    const download = await api.call('GET', `${href.pathname}${href.search}`)
    assert.deepEqual([download.status, download.body, download.headers['content-disposition']], [200, content, `attachment; filename*=UTF-8''bom.json`])
    assert.equal((await api.call('GET', href.pathname, {token})).body, content, 'a caller who may read the release needs no token')
    assert.equal((await api.call('GET', href.pathname)).status, 401)
    const guessed = new URL(href)
    guessed.searchParams.set('token', 'A'.repeat(32))
    assert.equal((await api.call('GET', `${guessed.pathname}${guessed.search}`)).status, 404)
    await server.addUser({email: 'trudy@example.com', username: 'trudy', password: 'trudy-password-1'})
    const trudy = await api.login('trudy', 'trudy-password-1')
    assert.equal((await api.call('GET', href.pathname, {token: trudy})).status, 404)
    const intruding = await api.call('POST', '/v7/release_asset', {token: trudy, ...(await formOf({release: String(release.id), asset_key: 'x'}, {name: 'x', type: 'text/plain', content: 'x'}))})
    assert.equal(intruding.status, 401, intruding.body)

    // release-asset upload --overwrite: the SDK finds the row by its key, then sends the new file in a multipart PATCH.
    const [existing] = await get(`/v7/release_asset(asset_key='${encodeURIComponent('../../escape')}',release=${release.id})?$select=id`)
    assert.equal(existing.id, id)
    const replaced = await api.call('PATCH', `/v7/release_asset(${id})`, {token, ...(await formOf({}, {name: 'bom2.json', type: 'application/json', content: '{}'}))})
    assert.equal(replaced.status, 200, replaced.body)
    const [after] = await get(`/v7/release_asset(${id})?$select=asset`)
    assert.deepEqual([after.asset.filename, after.asset.size], ['bom2.json', 2])
    assert.equal((await api.call('GET', href.pathname, {token})).body, '{}')
    assert.equal((await api.call('GET', `${href.pathname}${href.search}`)).status, 404, 'the href of the replaced file stops working')
    const newHref = new URL(after.asset.href)
    assert.equal((await api.call('GET', `${newHref.pathname}${newHref.search}`)).body, '{}')
    const foreignPatch = await api.call('PATCH', `/v7/release_asset(${id})`, {token: trudy, ...(await formOf({}, {name: 'x', type: 'text/plain', content: 'x'}))})
    assert.equal(foreignPatch.status, 401, foreignPatch.body)
    assert.equal((await api.call('GET', href.pathname, {token})).body, '{}', 'another user replaces nothing')

    const elsewhere = await api.call('POST', '/v7/application', {token, ...(await formOf({app_name: 'x'}))})
    assert.deepEqual([elsewhere.status, elsewhere.json()], [415, 'multipart/form-data is taken only by release asset uploads: POST /v7/release_asset or PATCH /v7/release_asset(<id>); send JSON'])
    const malformed = await api.call('POST', '/v7/release_asset', {token, body: 'not a form', headers: {'content-type': 'multipart/form-data; boundary=x'}})
    assert.equal(malformed.status, 400, malformed.body)

    const tooBig = await api.call('POST', '/v7/release_asset', {token, ...(await formOf({release: String(release.id), asset_key: 'big'}, {name: 'big.bin', type: 'application/octet-stream', content: new Uint8Array(5 * 1024 * 1024 + 1)}))})
    assert.equal(tooBig.status, 413, tooBig.body)

    assert.equal((await api.call('DELETE', `/v7/release_asset(${id})`, {token})).status, 200)
    assert.equal((await api.call('GET', href.pathname, {token})).status, 404)
  })

  it('creates a release naming the caller as its creator, and refuses another user (deploy)', async () => {
    const userId = (await api.call('GET', '/user/v1/whoami', {token})).json().id
    const release = {belongs_to__application: fleet.id, commit: 'c'.repeat(32), status: 'running', source: 'local', composition: {}, start_timestamp: new Date().toISOString()}
    const created = await api.call('POST', '/v7/release', {token, json: {...release, is_created_by__user: userId}})
    assert.equal(created.status, 201, created.body)
    assert.deepEqual(created.json().is_created_by__user, {__id: userId})
    const impersonating = await api.call('POST', '/v7/release', {token, json: {...release, commit: 'e'.repeat(32), is_created_by__user: userId + 1}})
    assert.equal(impersonating.status, 401, impersonating.body)
  })

  it('ends a deployed release once, and refuses to start it again or make it a draft with a 400 saying why (deploy)', async () => {
    const created = await api.created(token, 'release', {belongs_to__application: fleet.id, commit: 'd'.repeat(32), status: 'running', composition: {}})
    assert.equal((await api.call('PATCH', `/v7/release(${created.id})`, {token, json: {status: 'failed', end_timestamp: new Date().toISOString()}})).status, 200)
    const restarted = await api.call('PATCH', `/v7/release(${created.id})`, {token, json: {status: 'running'}})
    assert.equal(restarted.status, 400, restarted.body)
    assert.equal(restarted.json(), `release ${created.id} is failed: it cannot become running — only a running release ends, and it ends once`)
    const draft = await api.call('PATCH', `/v7/release(${created.id})`, {token, json: {is_final: false}})
    assert.equal(draft.status, 400, draft.body)
    assert.match(draft.json(), /cannot become a draft again/)
    const [release] = (await api.call('GET', `/v7/release(${created.id})?$select=status,is_final`, {token})).json().d
    assert.deepEqual([release.status, release.is_final], ['failed', true])
  })
})
