import assert from 'node:assert/strict'

import {desiredAppsOf, type PlanOptions} from '../../../src/agent/reconciler.js'
import {SupervisorNetwork} from '../../../src/agent/supervisor-network.js'
import {deviceTarget} from '../../helpers/target-state.js'

const planOptions: PlanOptions = {deviceUuid: 'd'.repeat(32), lockDirOf: () => '/locks', supervisorApi: {port: 48_484, apiKey: 'k'.repeat(32)}}

function appsWith(labels: Record<string, string>, composition: Record<string, unknown> = {}) {
  return desiredAppsOf(deviceTarget({uuid: 'a'.repeat(32), id: 1}, {commit: 'c'.repeat(32), id: 10, services: {main: {id: 1, image_id: 2, image: 'img', environment: {}, labels, composition}}}), planOptions)
}

/** The engine network in memory (the real one is made in the supervisor-api e2e test). */
function fixture(failures = 0) {
  const events: string[] = []
  let failing = failures
  const network = new SupervisorNetwork({
    name: 'supervisor0',
    ensure: async (name) => {
      events.push(`ensure ${name}`)
      if (failing-- > 0) throw new Error('engine refused')
      return '10.114.104.1'
    },
    listenAlso: async (host) => void events.push(`listen ${host}`),
    log: (message) => events.push(`log: ${message}`),
  })
  return {network, events}
}

describe('supervisor network', () => {
  it('is made only when a service on an app network asks for the supervisor API, and once', async () => {
    const {network, events} = fixture()
    await network.exposeFor(appsWith({}))
    await network.exposeFor(appsWith({'io.balena.features.supervisor-api': '1'}, {network_mode: 'host'}))
    assert.deepEqual(events, [], 'no service needs it: nothing is added to the engine')
    await network.exposeFor(appsWith({'io.balena.features.supervisor-api': '1'}))
    await network.exposeFor(appsWith({'io.balena.features.supervisor-api': '1'}))
    assert.deepEqual(events, ['ensure supervisor0', 'listen 10.114.104.1'])
    assert.deepEqual(network.network, {name: 'supervisor0', gateway: '10.114.104.1'})
  })

  it('says why it could not be made, and tries again at the next round', async () => {
    const {network, events} = fixture(1)
    await network.exposeFor(appsWith({'io.balena.features.supervisor-api': '1'}))
    assert.equal(network.network, undefined)
    await network.exposeFor(appsWith({'io.balena.features.supervisor-api': '1'}))
    assert.deepEqual(events, ['ensure supervisor0', "log: the local API cannot be reached from the services' networks: engine refused", 'ensure supervisor0', 'listen 10.114.104.1'])
  })
})
