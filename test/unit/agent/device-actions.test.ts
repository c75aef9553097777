import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {type ActionEngine, DeviceActions, type DeviceActionsOptions, UpdateLockedError} from '../../../src/agent/device-actions.js'
import type {CurrentContainer, CurrentState, Step} from '../../../src/agent/reconciler.js'

function container(id: string, appId: number, status: CurrentContainer['status'] = 'running'): CurrentContainer {
  return {id, name: `main_1_1_${id}`, appId, appUuid: 'a'.repeat(32), serviceName: `svc-${id}`, serviceId: 1, imageId: 1, releaseId: 1, commit: 'c'.repeat(32), image: 'img', configHash: 'h', status}
}

const emptyState = (): CurrentState => ({containers: [], images: [], fetchedImages: [], volumes: [], lockedAppIds: []})

/** An engine in memory that records, in one list with the system lines and the reconciler's holds, what happens in which order. */
function fixture(current: Partial<CurrentState>, options: Partial<DeviceActionsOptions> = {}) {
  const events: string[] = []
  let holds = 0
  const engine: ActionEngine = {
    readCurrentState: async () => ({...emptyState(), ...current}),
    apply: async (step: Step) => {
      if (step.action === 'kill' || step.action === 'remove' || step.action === 'start') events.push(`${step.action} ${step.container.id}`)
    },
    removeAppVolumes: async (appId) => {
      events.push(`remove volumes of ${appId}`)
      return [`${appId}_data`]
    },
  }
  const actions = new DeviceActions({
    engine: () => engine,
    systemLine: (message) => events.push(`log: ${message}`),
    holdReconciler: async () => {
      holds++
      events.push('hold')
      return () => {
        holds--
        events.push('release')
      }
    },
    runCommand: async (words) => void events.push(`run ${JSON.stringify(words)}`),
    ...options,
  })
  return {actions, events, holds: () => holds}
}

describe('device actions', () => {
  describe('purge', () => {
    it('stops and removes the app\'s containers, then its volumes, while the reconciler is held, and says so', async () => {
      const {actions, events, holds} = fixture({containers: [container('one', 5), container('other', 6), container('stopped', 5, 'exited')]})
      await actions.purge(5)
      assert.deepEqual(events, [
        'hold',
        'log: Purging data for app 5',
        'kill one',
        'remove one',
        'remove stopped',
        'remove volumes of 5',
        'log: Purged data',
        'release',
      ])
      assert.equal(holds(), 0)
    })

    it('refuses while the app holds its update lock, unless forced or overridden', async () => {
      const locked = fixture({containers: [container('one', 5)], lockedAppIds: [5]})
      await assert.rejects(locked.actions.purge(5), UpdateLockedError)
      assert.deepEqual(locked.events, ['hold', 'log: Not purging data for app 5: its update lock is held; force to override', 'release'])

      const forced = fixture({containers: [container('one', 5)], lockedAppIds: [5]})
      await forced.actions.purge(5, true)
      assert.ok(forced.events.includes('log: Purged data'))

      const overridden = fixture({containers: [container('one', 5)], lockedAppIds: [5]}, {lockOverridden: () => true})
      await overridden.actions.purge(5)
      assert.ok(overridden.events.includes('remove volumes of 5'))

      const otherApp = fixture({lockedAppIds: [6]})
      await otherApp.actions.purge(5)
      assert.ok(otherApp.events.includes('log: Purged data'), 'another app\'s lock does not matter')
    })

    it('says why it failed and lets the reconciler go on', async () => {
      const events: string[] = []
      let holds = 0
      const failing = new DeviceActions({
        engine: () => ({
          readCurrentState: async () => emptyState(),
          apply: async () => {},
          removeAppVolumes: async () => {
            throw new Error('volume is in use')
          },
        }),
        systemLine: (message) => events.push(`log: ${message}`),
        holdReconciler: async () => {
          holds++
          return () => {
            holds--
            events.push('release')
          }
        },
      })
      await assert.rejects(failing.purge(5), /volume is in use/)
      assert.deepEqual(events, ['log: Purging data for app 5', 'log: Error purging data: volume is in use', 'release'])
      assert.equal(holds, 0)
    })

    it('is refused before the device is registered', async () => {
      const actions = new DeviceActions({engine: () => undefined, systemLine: () => {}, holdReconciler: async () => () => {}})
      await assert.rejects(actions.purge(5), /not registered/)
    })
  })

  describe('stop-service and start-service', () => {
    it('stops the service named or of the image given and keeps it stopped for the reconciler, until started again', async () => {
      const other = {...container('other', 5), serviceName: 'web', imageId: 2}
      const {actions, events, holds} = fixture({containers: [container('one', 5), other, container('elsewhere', 6)]})
      await actions.stopService({appId: 5, serviceName: 'svc-one'})
      await actions.stopService({appId: 5, imageId: 2})
      assert.deepEqual(events, ['hold', 'kill one', 'release', 'hold', 'kill other', 'release'])
      assert.deepEqual(actions.stoppedContainerIds(), ['one', 'other'])
      assert.equal(holds(), 0)

      const stopped = fixture({containers: [container('one', 5, 'exited')]})
      await stopped.actions.stopService({appId: 5, serviceName: 'svc-one'})
      await stopped.actions.startService({appId: 5, serviceName: 'svc-one'})
      assert.deepEqual(stopped.events, ['hold', 'release', 'hold', 'start one', 'release'])
      assert.deepEqual(stopped.actions.stoppedContainerIds(), [])
    })

    it('says so when the app has no such service, and stops nothing', async () => {
      const {actions, events} = fixture({containers: [container('one', 5)]})
      await actions.stopService({appId: 5, serviceName: 'missing'})
      await actions.startService({appId: 6, imageId: 1})
      assert.deepEqual(events, ['hold', "log: No service 'missing' of app 5 to stop", 'release', 'hold', 'log: No service of image 1 of app 6 to start', 'release'])
      assert.deepEqual(actions.stoppedContainerIds(), [])
    })

    it('does not stop a service while its app holds the update lock, unless forced', async () => {
      const locked = fixture({containers: [container('one', 5)], lockedAppIds: [5]})
      await assert.rejects(locked.actions.stopService({appId: 5, serviceName: 'svc-one'}), UpdateLockedError)
      assert.deepEqual(locked.events, ['hold', "log: Not stopping service 'svc-one': the update lock of app 5 is held; force to override", 'release'])
      assert.deepEqual(locked.actions.stoppedContainerIds(), [])
      const forced = fixture({containers: [container('one', 5)], lockedAppIds: [5]})
      await forced.actions.stopService({appId: 5, serviceName: 'svc-one'}, true)
      assert.ok(forced.events.includes('kill one'))
    })
  })

  describe('reboot and shutdown', () => {
    it('stops every running service, says so, then runs the configured command and keeps the reconciler held', async () => {
      const {actions, events, holds} = fixture(
        {containers: [container('one', 5), container('two', 6, 'restarting'), container('down', 5, 'exited')]},
        {commands: {reboot: `sh -c 'echo rebooted > /tmp/x'`}},
      )
      await actions.power('reboot')
      assert.deepEqual(events, ['hold', 'log: Stopping services before rebooting', 'kill one', 'kill two', 'log: Rebooting', 'run ["sh","-c","echo rebooted > /tmp/x"]'])
      assert.equal(holds(), 1, 'the host is going down: the services must not come back')
    })

    it('defaults to systemctl, as balenaOS asks systemd', async () => {
      const reboot = fixture({})
      await reboot.actions.power('reboot')
      assert.ok(reboot.events.includes('run ["systemctl","reboot"]'))
      const shutdown = fixture({})
      await shutdown.actions.power('shutdown')
      assert.deepEqual(shutdown.events.slice(-2), ['log: Shutting down', 'run ["systemctl","poweroff"]'])
    })

    it('refuses while any app holds its update lock, without stopping anything, unless forced', async () => {
      const locked = fixture({containers: [container('one', 5)], lockedAppIds: [5]})
      await assert.rejects(locked.actions.power('shutdown'), UpdateLockedError)
      assert.deepEqual(locked.events, ['hold', 'log: Not shutting down: the update lock is held (app 5); force to override', 'release'])
      assert.equal(locked.holds(), 0)

      const forced = fixture({containers: [container('one', 5)], lockedAppIds: [5]})
      await forced.actions.power('reboot', true)
      assert.deepEqual(forced.events.slice(-3), ['kill one', 'log: Rebooting', 'run ["systemctl","reboot"]'])
    })

    it('says when the command fails and lets the reconciler start the services again', async () => {
      const {actions, events, holds} = fixture({containers: [container('one', 5)]}, {
        runCommand: async () => {
          throw new Error('systemctl reboot: Access denied')
        },
      })
      await assert.rejects(actions.power('reboot'), /Access denied/)
      assert.deepEqual(events.slice(-2), ['log: Reboot failed: systemctl reboot: Access denied', 'release'])
      assert.equal(holds(), 0)
    })

    it('refuses an empty command, and lets the reconciler start the services again', async () => {
      const {actions, events, holds} = fixture({containers: [container('one', 5)]}, {commands: {reboot: '  '}})
      await assert.rejects(actions.power('reboot'), /the reboot command is empty/)
      assert.deepEqual(events.slice(-2), ['log: Reboot failed: the reboot command is empty', 'release'])
      assert.ok(!events.some((event) => event.startsWith('run ')), 'nothing ran')
      assert.equal(holds(), 0)
    })

    it('runs the command as a process, without a shell, and reports a non-zero exit with its stderr', async () => {
      const folder = await mkdtemp(path.join(tmpdir(), 'flotilla-power-'))
      try {
        const file = path.join(folder, 'rebooted')
        const lines: string[] = []
        const actions = new DeviceActions({
          engine: () => ({readCurrentState: async () => emptyState(), apply: async () => {}, removeAppVolumes: async () => []}),
          systemLine: (message) => lines.push(message),
          holdReconciler: async () => () => {},
          commands: {reboot: `sh -c 'echo rebooted > ${file}'`, shutdown: `sh -c 'echo nope >&2; exit 3'`},
        })
        await actions.power('reboot')
        assert.equal(await readFile(file, 'utf8'), 'rebooted\n')
        await assert.rejects(actions.power('shutdown'), /nope/)
        assert.match(lines.at(-1) ?? '', /^Shutdown failed: sh -c echo nope >&2; exit 3: nope$/)
      } finally {
        await rm(folder, {recursive: true, force: true})
      }
    })
  })
})
