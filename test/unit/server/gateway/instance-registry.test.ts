import {strict as assert} from 'node:assert'
import {EventEmitter} from 'node:events'
import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'
import {Duplex} from 'node:stream'

import type {Connection} from 'ssh2'

import type {Db} from '../../../../src/server/db/database.js'
import {now} from '../../../../src/server/db/values.js'
import {DeviceLinks} from '../../../../src/server/gateway/device-links.js'
import {InstanceRegistry} from '../../../../src/server/gateway/instance-registry.js'
import {internalChannelKey, internalChannelServer, remoteLinks} from '../../../../src/server/gateway/internal-channel.js'
import {Heartbeats} from '../../../../src/server/heartbeats.js'
import {TargetStates} from '../../../../src/server/target-states.js'
import {eventually} from '../../../helpers/fleet-api.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../../helpers/postgres.js'

/** A device row (and the fleet it needs) for link rows to refer to. */
async function newDevice(db: Db, uuid: string): Promise<number> {
  const deviceType = await db.selectFrom('device_type').select('id').where('slug', '=', 'generic-amd64').executeTakeFirstOrThrow()
  const organization = await db.insertInto('organization').values({created_at: now(), name: uuid, handle: uuid}).returning('id').executeTakeFirstOrThrow()
  const actor = async (kind: 'application' | 'device') => (await db.insertInto('actor').values({kind}).returning('id').executeTakeFirstOrThrow()).id
  const fleet = await db
    .insertInto('application')
    .values({created_at: now(), app_name: 'fleet', slug: `${uuid}/fleet`, uuid, is_for__device_type: deviceType.id, organization: organization.id, is_of__class: 'fleet', actor: await actor('application'), should_track_latest_release: 1, is_host: 0, is_archived: 0, is_public: 0})
    .returning('id')
    .executeTakeFirstOrThrow()
  const device = await db
    .insertInto('device')
    .values({created_at: now(), uuid, device_name: 'device', is_of__device_type: deviceType.id, belongs_to__application: fleet.id, actor: await actor('device'), is_online: 0, api_heartbeat_state: 'unknown', is_undervolted: 0, is_web_accessible: 0})
    .returning('id')
    .executeTakeFirstOrThrow()
  return device.id
}

for (const dialect of DIALECTS) {
  describe(`the server instance registry (${dialect})`, () => {
    let db: Db
    let device: number
    const started: InstanceRegistry[] = []
    const start = async (url: string, options: {refreshMs?: number} = {}) => {
      const registry = new InstanceRegistry(db, {onError: (error) => assert.fail(error as Error), linkedDeviceIds: () => [device], ...options})
      await registry.start(url)
      started.push(registry)
      return registry
    }

    const links = () => db.selectFrom('device_link').select(['device', 'instance']).execute()

    beforeEach(async () => {
      db = await openTestDatabase(dialect)
      device = await newDevice(db, '1'.repeat(32))
    })

    afterEach(async () => {
      for (const registry of started.splice(0)) await registry.stop()
      await closeTestDatabase(db)
    })

    it('tells another instance which one holds a link, and forgets a link only while it is still its own', async () => {
      const a = await start('http://10.0.0.1:7171')
      const b = await start('http://10.0.0.2:7171')
      await a.linked(device)
      assert.deepEqual(await b.ownerOf(device), {id: a.id, internalUrl: 'http://10.0.0.1:7171'})
      assert.equal(await a.ownerOf(device), undefined, 'an instance never routes to itself')
      // The device relinked to B before A noticed its old link close.
      await b.linked(device)
      assert.equal(await a.unlinked(device), false)
      assert.deepEqual(await a.ownerOf(device), {id: b.id, internalUrl: 'http://10.0.0.2:7171'})
      assert.equal(await b.unlinked(device), true)
      assert.equal(await a.ownerOf(device), undefined)
    })

    it('routes nothing to an instance silent for the timeout, and the next one to start removes it with its links', async () => {
      const a = await start('http://10.0.0.1:7171')
      const b = await start('http://10.0.0.2:7171')
      await a.linked(device)
      await db.updateTable('server_instance').set({last_seen_at: new Date(Date.now() - 60_000).toISOString()}).where('id', '=', a.id).execute()
      assert.equal(await b.ownerOf(device), undefined)
      await start('http://10.0.0.3:7171')
      assert.deepEqual(await links(), [])
      assert.equal((await db.selectFrom('server_instance').select('id').where('id', '=', a.id).execute()).length, 0)
    })

    it('takes its links with it when it stops', async () => {
      const a = await start('http://10.0.0.1:7171')
      await a.linked(device)
      await a.stop()
      assert.deepEqual(await links(), [])
    })

    it('leaves a device online when the link its old instance closes late was already replaced by one to another instance', async () => {
      // What each instance answered when its link closed, in order.
      const unlinked: Array<Promise<boolean>> = []
      const linksOf = async (url: string) => {
        const links = new DeviceLinks({db, targetStates: new TargetStates(db), heartbeats: new Heartbeats(db, {timeoutMs: 60_000, onError: assert.fail}), onError: assert.fail})
        const remote = remoteLinks(await start(url), internalChannelKey(Buffer.alloc(32)))
        links.routeThrough({...remote, unlinked: (deviceId) => unlinked[unlinked.push(remote.unlinked(deviceId)) - 1]})
        return links
      }

      // A link as DeviceLinks sees one: closed when the test says.
      const connection = () => Object.assign(new EventEmitter(), {end() {}}) as unknown as Connection
      const isOnline = async () => (await db.selectFrom('device').select('is_online').where('id', '=', device).executeTakeFirstOrThrow()).is_online
      const [a, b] = [await linksOf('http://10.0.0.1:7171'), await linksOf('http://10.0.0.2:7171')]
      const [toA, toB] = [connection(), connection()]
      await a.add({deviceId: device, uuid: '1'.repeat(32), keyId: 1}, toA)
      await b.add({deviceId: device, uuid: '1'.repeat(32), keyId: 1}, toB)
      toA.emit('close')
      await eventually(async () => unlinked.length === 1, 'the old instance to forget its link')
      assert.equal(await unlinked[0], false, 'the link was already recorded as the other instance\u2019s')
      assert.equal(await isOnline(), 1)
      toB.emit('close')
      await eventually(async () => (await isOnline()) === 0, 'the device to read offline once its last link closed')
      assert.deepEqual(await links(), [])
    })

    it('delivers an action to a device linked to another instance over the internal channel, and says when none holds its link', async () => {
      const key = internalChannelKey(Buffer.alloc(32, 7))
      const newLinks = () => new DeviceLinks({db, targetStates: new TargetStates(db), heartbeats: new Heartbeats(db, {timeoutMs: 60_000, onError: assert.fail}), onError: assert.fail})
      // Instance A holds the link and serves internal channels on a port of its own.
      const a = newLinks()
      const registryA = new InstanceRegistry(db, {onError: assert.fail, linkedDeviceIds: () => a.linkedDeviceIds()})
      const http = createServer()
      http.on('upgrade', internalChannelServer({key, instanceId: registryA.id, openLocalChannel: (deviceId, kind, port) => a.openLocalChannel(deviceId, '', kind, port), log: assert.fail}))
      await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
      try {
        await registryA.start(`http://127.0.0.1:${(http.address() as AddressInfo).port}`)
        started.push(registryA)
        a.routeThrough(remoteLinks(registryA, key))
        // The agent's side of the link: the kind of each channel opened, and what came through it.
        const channels: Array<{kind: string; received: string}> = []
        const connection = Object.assign(new EventEmitter(), {
          end() {},
          forwardOut(_address: string, _port: number, kind: string, _devicePort: number, opened: (error: Error | undefined, channel: Duplex) => void) {
            const record = {kind, received: ''}
            channels.push(record)
            const channel = new Duplex({
              read() {},
              write(chunk: Buffer, _encoding, done) {
                record.received += chunk.toString('utf8')
                done()
              },
              final(done) {
                this.push(null)
                done()
              },
            })
            opened(undefined, channel)
          },
        }) as unknown as Connection
        await a.add({deviceId: device, uuid: '1'.repeat(32), keyId: 1}, connection)

        const b = newLinks()
        b.routeThrough(remoteLinks(await start('http://127.0.0.1:1'), key))
        assert.equal(await b.deliverAction(device, {action: 'blink'}), true)
        await eventually(async () => channels[0]?.received.endsWith('\n'), 'the action to reach the link')
        assert.deepEqual(channels.map((channel) => ({...channel, received: JSON.parse(channel.received)})), [{kind: 'control', received: {type: 'action', action: {action: 'blink'}}}])
        assert.equal(await b.deliverAction(await newDevice(db, '2'.repeat(32)), {action: 'blink'}), false, 'no instance holds that device\u2019s link: the caller queues the action')
      } finally {
        http.close()
      }
    })

    it('joins again with its links when another instance took it for dead (a long stall)', async () => {
      const a = await start('http://10.0.0.1:7171', {refreshMs: 50})
      await a.linked(device)
      await db.deleteFrom('server_instance').where('id', '=', a.id).execute()
      assert.deepEqual(await links(), [])
      await eventually(async () => (await links()).length === 1, 'the instance to record its link again', 5000)
      assert.deepEqual(await links(), [{device, instance: a.id}])
    })
  })
}
