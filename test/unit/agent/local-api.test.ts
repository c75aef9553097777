import assert from 'node:assert/strict'

import {UpdateLockedError} from '../../../src/agent/device-actions.js'
import {type LocalApi, startLocalApi} from '../../../src/agent/local-api.js'
import type {LocalLogLine} from '../../../src/protocol/log-line.js'

describe('local API', () => {
  let api: LocalApi
  const listeners = new Set<(line: LocalLogLine) => void>()
  const calls: string[] = []
  const url = (route: string) => `http://127.0.0.1:${api.port}${route}`

  before(async () => {
    api = await startLocalApi({
      port: 0,
      handlers: {
        version: '1.2.3',
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
        restartService: async (appId, serviceName) => void calls.push(`restart ${appId} ${serviceName}`),
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
    assert.deepEqual(calls, ['update true', 'restart 5', 'restart 5 main', 'blink'])
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
})
