import assert from 'node:assert/strict'

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
        restartService: async (appId, serviceName) => void calls.push(`restart ${appId} ${serviceName}`),
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
    assert.deepEqual(calls, ['update true', 'restart 5', 'restart 5 main'])
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
