import assert from 'node:assert/strict'

import {Readable} from 'node:stream'

import {UpdateLockedError} from '../../../src/agent/device-actions.js'
import {journalArgsOf, type LocalApi, startLocalApi} from '../../../src/agent/local-api.js'
import type {LocalLogLine} from '../../../src/protocol/log-line.js'

describe('local API', () => {
  let api: LocalApi
  const listeners = new Set<(line: LocalLogLine) => void>()
  const calls: string[] = []
  const KEY = 'k'.repeat(48)
  const journals: string[][] = []
  const url = (route: string) => `http://127.0.0.1:${api.port}${route}${route.includes('?') ? '&' : '?'}apikey=${KEY}`

  before(async () => {
    api = await startLocalApi({
      port: 0,
      apiKey: KEY,
      handlers: {
        version: '1.2.3',
        healthy: () => true,
        app: (appId) => {
          if (appId !== 5) throw Object.assign(new Error(`app ${appId} is not on this device`), {statusCode: 404})
          return {appId, commit: 'abc', containerId: 'c1', env: {A: '1'}, imageId: 7, releaseId: 8, serviceName: 'main'}
        },
        deviceName: () => 'pi-one',
        deviceTags: async () => [{id: 1, name: 'room', value: 'lab'}],
        serviceAction: async (action, appId, service) => void calls.push(`${action} ${appId} ${JSON.stringify(service)}`),
        cleanupVolumes: async () => void calls.push('cleanup-volumes'),
        journal: (args) => {
          journals.push(args)
          return Readable.from(['line one\n', 'line two\n'])
        },
        device: () => ({status: 'Idle'}),
        applicationsState: () => ({fleet: {appId: 1}}),
        stateStatus: () => ({appState: 'applied'}),
        subscribeLogs: (listener) => {
          listeners.add(listener)
          return () => listeners.delete(listener)
        },
        update: (force) => void calls.push(`update ${force}`),
        restartApp: async (appId) => void calls.push(`restart ${appId}`),
        blink: () => void calls.push('blink'),
        purge: async (appId, force) => {
          calls.push(`purge ${appId} ${force}`)
          if (appId === 9 && !force) throw new UpdateLockedError('the update lock is held')
        },
        reboot: async (force) => void calls.push(`reboot ${force}`),
        shutdown: async (force) => {
          calls.push(`shutdown ${force}`)
          if (!force) throw new UpdateLockedError('the update lock is held')
        },
      },
    })
  })
  after(() => api.close())

  it('answers the read routes', async () => {
    assert.equal(await (await fetch(url('/ping'))).text(), 'OK')
    assert.deepEqual(await (await fetch(url('/v2/version'))).json(), {status: 'success', version: '1.2.3'})
    assert.deepEqual(await (await fetch(url('/v1/device'))).json(), {status: 'Idle'})
    assert.deepEqual(await (await fetch(url('/v2/applications/state'))).json(), {fleet: {appId: 1}})
    assert.deepEqual(await (await fetch(url('/v2/state/status'))).json(), {status: 'success', appState: 'applied'})
    assert.equal((await fetch(url('/nope'))).status, 404)
  })

  it('takes actions', async () => {
    assert.equal((await fetch(url('/v1/update'), {method: 'POST', body: JSON.stringify({force: true}), headers: {'content-type': 'application/json'}})).status, 204)
    assert.equal((await fetch(url('/v1/restart'), {method: 'POST', body: JSON.stringify({appId: 5})})).status, 200)
    assert.equal((await fetch(url('/v2/applications/5/restart-service'), {method: 'POST', body: JSON.stringify({serviceName: 'main'})})).status, 200)
    assert.equal((await fetch(url('/v1/restart'), {method: 'POST', body: 'nope'})).status, 400)
    assert.equal((await fetch(url('/v1/blink'), {method: 'POST'})).status, 200)
    assert.deepEqual(calls, ['update true', 'restart 5', 'restart-service 5 {"serviceName":"main"}', 'blink'])
  })

  it('purges, reboots and shuts down with the supervisor\'s v1 answers, and 423 while an update lock is held', async () => {
    calls.length = 0
    const post = (route: string, body: unknown) => fetch(url(route), {method: 'POST', body: JSON.stringify(body), headers: {'content-type': 'application/json'}})
    const purged = await post('/v1/purge', {appId: 5})
    assert.equal(purged.status, 200)
    assert.deepEqual(await purged.json(), {Data: 'OK', Error: ''})
    const rebooted = await post('/v1/reboot', {})
    assert.equal(rebooted.status, 202)
    assert.deepEqual(await rebooted.json(), {Data: 'OK', Error: null})
    const locked = await post('/v1/purge', {appId: 9})
    assert.equal(locked.status, 423)
    assert.deepEqual(await locked.json(), {status: 'failed', message: 'the update lock is held'})
    assert.equal((await post('/v1/purge', {appId: 9, force: true})).status, 200)
    assert.equal((await post('/v1/shutdown', {force: false})).status, 423)
    assert.equal((await post('/v1/shutdown', {force: 'true'})).status, 202)
    assert.equal((await post('/v1/purge', {})).status, 400)
    assert.deepEqual(calls, ['purge 5 false', 'reboot false', 'purge 9 false', 'purge 9 true', 'shutdown false', 'shutdown true'])
  })

  it('streams logs as NDJSON, first line first', async () => {
    const response = await fetch(url('/v2/local/logs'))
    assert.equal(response.headers.get('content-type'), 'application/x-ndjson')
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let text = ''
    const deadline = Date.now() + 5000
    while (listeners.size === 0 && Date.now() < deadline) {
      text += decoder.decode((await reader.read()).value)
    }

    for (const listener of listeners) listener({message: 'hello', timestamp: 1, isSystem: false, isStdErr: false, serviceId: 3, serviceName: 'main'})
    while (text.split('\n').length < 3) text += decoder.decode((await reader.read()).value)
    await reader.cancel()
    const lines = text.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
    assert.deepEqual(lines[0], {message: 'Streaming logs', isSystem: true})
    assert.equal(lines[1].serviceName, 'main')
    assert.equal(lines[1].message, 'hello')
  })

  it('asks every route but /ping for the key, by ?apikey= or Authorization: Bearer', async () => {
    const bare = `http://127.0.0.1:${api.port}`
    assert.equal((await fetch(`${bare}/ping`)).status, 200)
    for (const route of ['/v1/device', '/v2/version', '/v2/local/logs', '/v1/healthy']) {
      const refused = await fetch(`${bare}${route}`)
      assert.equal(refused.status, 401, route)
      assert.equal(await refused.text(), 'Unauthorized')
      assert.equal((await fetch(`${bare}${route}?apikey=wrong`)).status, 401, route)
      assert.equal((await fetch(`${bare}${route}`, {headers: {authorization: 'Bearer wrong'}})).status, 401, route)
    }

    const before = calls.length
    assert.equal((await fetch(`${bare}/v1/reboot`, {method: 'POST', body: '{"force":true}'})).status, 401)
    assert.equal(calls.length, before, 'a refused request does nothing')
    assert.equal((await fetch(`${bare}/v2/version`, {headers: {authorization: `Bearer ${KEY}`}})).status, 200)
  })

  it('answers the v1 app, device, tag, health and volume routes as balena does', async () => {
    calls.length = 0
    assert.equal(await (await fetch(url('/v1/healthy'))).text(), 'OK')
    assert.deepEqual(await (await fetch(url('/v1/apps/5'))).json(), {appId: 5, commit: 'abc', containerId: 'c1', env: {A: '1'}, imageId: 7, releaseId: 8, serviceName: 'main'})
    assert.equal((await fetch(url('/v1/apps/6'))).status, 404)
    assert.deepEqual(await (await fetch(url('/v1/apps/5/stop'), {method: 'POST', body: '{}'})).json(), {containerId: 'c1'})
    assert.deepEqual(await (await fetch(url('/v1/apps/5/start'), {method: 'POST'})).json(), {containerId: 'c1'})
    assert.deepEqual(await (await fetch(url('/v2/device/name'))).json(), {status: 'success', deviceName: 'pi-one'})
    assert.deepEqual(await (await fetch(url('/v2/device/tags'))).json(), {status: 'success', tags: [{id: 1, name: 'room', value: 'lab'}]})
    assert.deepEqual(await (await fetch(url('/v2/cleanup-volumes'))).json(), {status: 'success'})
    assert.deepEqual(calls, ['stop-service 5 {"serviceName":"main"}', 'start-service 5 {"serviceName":"main"}', 'cleanup-volumes'])
  })

  it('maps the v2 application routes to the actions, a service named or by image', async () => {
    calls.length = 0
    const post = (route: string, body: unknown) => fetch(url(route), {method: 'POST', body: JSON.stringify(body)})
    for (const action of ['restart-service', 'stop-service', 'start-service']) assert.equal(await (await post(`/v2/applications/5/${action}`, {serviceName: 'main'})).text(), 'OK')
    assert.equal((await post('/v2/applications/5/stop-service', {imageId: 7})).status, 200)
    assert.equal((await post('/v2/applications/5/stop-service', {})).status, 400)
    assert.equal(await (await post('/v2/applications/5/restart', {})).text(), 'OK')
    assert.equal(await (await post('/v2/applications/5/purge', {force: true})).text(), 'OK')
    assert.equal((await post('/v2/applications/x/restart', {})).status, 400)
    assert.deepEqual(calls, [
      'restart-service 5 {"serviceName":"main"}',
      'stop-service 5 {"serviceName":"main"}',
      'start-service 5 {"serviceName":"main"}',
      'stop-service 5 {"imageId":7}',
      'restart 5',
      'purge 5 true',
    ])
  })

  it("streams the host's journal for /v2/journal-logs, each option passed so that none reads as another", async () => {
    const response = await fetch(url('/v2/journal-logs'), {method: 'POST', body: JSON.stringify({follow: true, count: 10, unit: 'docker.service', format: 'json'})})
    assert.equal(await response.text(), 'line one\nline two\n')
    assert.deepEqual(journals.at(-1), ['--no-pager', '--follow', '--lines=10', '--unit=docker.service', '--output=json'])
    assert.deepEqual(journalArgsOf({containerId: 'a'.repeat(64), since: '-1h'}), ['--no-pager', `CONTAINER_ID_FULL=${'a'.repeat(64)}`, '--output=short', '--since=-1h'])
    assert.equal((await fetch(url('/v2/journal-logs'), {method: 'POST', body: JSON.stringify({format: 'x; rm -rf /'})})).status, 400)
    assert.equal((await fetch(url('/v2/journal-logs'), {method: 'POST', body: JSON.stringify({containerId: '--help'})})).status, 400)
  })
})
