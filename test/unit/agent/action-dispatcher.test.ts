import assert from 'node:assert/strict'

import {ActionDispatcher, type ActionDispatcherOptions} from '../../../src/agent/action-dispatcher.js'
import type {CurrentContainer} from '../../../src/agent/reconciler.js'
import type {DeviceAction} from '../../../src/protocol/device-action.js'

function container(id: string, appId: number, serviceName: string, imageId: number): CurrentContainer {
  return {id, name: `${serviceName}_${imageId}_1_c`, appId, appUuid: 'a'.repeat(32), serviceName, serviceId: imageId + 1000, imageId, releaseId: 1, commit: 'c', image: `img-${serviceName}`, configHash: 'h', status: 'running'}
}

/** A dispatcher over containers in memory (the engine runs in the e2e tests), recording what it did in one list. */
function fixture(overrides: Partial<ActionDispatcherOptions> = {}) {
  const events: string[] = []
  const containers = [container('m1', 1, 'main', 10), container('s1', 1, 'side', 11), container('o1', 2, 'main', 20)]
  const dispatcher = new ActionDispatcher({
    containers: () => containers,
    restartContainer: async (id) => void events.push(`restart ${id}`),
    deviceActions: {
      stopService: async (selector) => void events.push(`stop-service ${JSON.stringify(selector)}`),
      startService: async (selector) => void events.push(`start-service ${JSON.stringify(selector)}`),
      purge: async (appId, force) => void events.push(`purge ${appId} ${force}`),
      power: async (action, force) => void events.push(`${action} ${force}`),
    },
    volumeCleaner: () => ({removeVolumesOfAppsOtherThan: async (wanted) => {
      events.push(`cleanup except ${[...wanted].join(',')}`)
      return {removed: ['2_data'], kept: [{name: '3_data', reason: 'volume is in use'}]}
    }}),
    wantedAppIds: () => new Set([1]),
    systemLine: (message, serviceId) => events.push(`log: ${message}${serviceId === undefined ? '' : ` (${serviceId})`}`),
    log: (message) => events.push(`agent: ${message}`),
    ...overrides,
  })
  return {dispatcher, events}
}

describe('action dispatcher', () => {
  it('restarts every container of an app, saying so for each service', async () => {
    const {dispatcher, events} = fixture()
    await dispatcher.perform({action: 'restart', appId: 1})
    assert.deepEqual(events, ["log: Restarting service 'main img-main' (1010)", 'restart m1', "log: Restarting service 'side img-side' (1011)", 'restart s1'])
  })

  it('restarts one service, named or found by the image it runs, and says when none runs it', async () => {
    const byName = fixture()
    await byName.dispatcher.perform({action: 'restart-service', appId: 1, serviceName: 'side'})
    assert.deepEqual(byName.events.filter((event) => event.startsWith('restart')), ['restart s1'])
    const byImage = fixture()
    await byImage.dispatcher.perform({action: 'restart-service', appId: 2, imageId: 20})
    assert.deepEqual(byImage.events.filter((event) => event.startsWith('restart')), ['restart o1'])
    const none = fixture()
    await none.dispatcher.perform({action: 'restart-service', appId: 1, imageId: 99})
    assert.deepEqual(none.events, ['log: No running service to restart for image 99'])
  })

  it('hands stop, start, purge, reboot and shutdown to the device actions, with force only when asked', async () => {
    const {dispatcher, events} = fixture()
    const actions: DeviceAction[] = [
      {action: 'stop-service', appId: 1, serviceName: 'main'},
      {action: 'start-service', appId: 1, imageId: 10},
      {action: 'purge', appId: 1},
      {action: 'reboot', force: true},
      {action: 'shutdown', force: false},
    ]
    for (const action of actions) await dispatcher.perform(action)
    assert.deepEqual(events, [
      'stop-service {"action":"stop-service","appId":1,"serviceName":"main"}',
      'start-service {"action":"start-service","appId":1,"imageId":10}',
      'purge 1 false',
      'reboot true',
      'shutdown false',
    ])
  })

  it('identifies the device in its logs, and says so of an action it does not know', async () => {
    const {dispatcher, events} = fixture()
    await dispatcher.perform({action: 'blink'})
    await dispatcher.perform({action: 'self-destruct'} as unknown as DeviceAction)
    assert.deepEqual(events, ['log: Identify requested: this is the device', "log: This agent does not support the 'self-destruct' action"])
  })

  it('performLogged turns a failure into the agent\'s own diagnostic instead of a rejection', async () => {
    const {dispatcher, events} = fixture({restartContainer: async () => {
      throw new Error('engine gone')
    }})
    await dispatcher.performLogged({action: 'restart', appId: 2})
    assert.deepEqual(events.at(-1), 'agent: device action restart failed: engine gone')
  })

  it('cleans up the volumes of apps the target no longer has, and refuses before registration', async () => {
    const {dispatcher, events} = fixture()
    await dispatcher.cleanupVolumes()
    assert.deepEqual(events, ['cleanup except 1', "log: Removed volume '2_data'", 'agent: volume 3_data kept: volume is in use'])
    const unregistered = fixture({volumeCleaner: () => undefined})
    await assert.rejects(unregistered.dispatcher.cleanupVolumes(), /not registered yet/)
  })
})
