import {strict as assert} from 'node:assert'

import {type ClusterBus, decodeClusterEvent, encodeClusterEvent, MAX_PAYLOAD_BYTES, type ReceivedClusterEvent} from '../../../../src/server/cluster/bus.js'
import {openClusterBus} from '../../../../src/server/cluster/open.js'
import type {PostgresBus} from '../../../../src/server/cluster/postgres-bus.js'
import {type Db, openDatabase} from '../../../../src/server/db/database.js'
import {eventually} from '../../../helpers/fleet-api.js'
import {DIALECTS} from '../../../helpers/postgres.js'
import {sharedLocation} from './shared-database.js'

describe('cluster bus payloads', () => {
  it('ignores payloads of another version, of an unknown type or with ids that are not integers', () => {
    assert.deepEqual(decodeClusterEvent('{"v":1,"o":"ab","t":"targets"}'), {origin: 'ab', event: {type: 'targets'}})
    assert.equal(decodeClusterEvent('{"v":2,"o":"ab","t":"targets"}'), undefined)
    assert.equal(decodeClusterEvent('{"v":1,"o":"ab","t":"explode"}'), undefined)
    assert.equal(decodeClusterEvent('{"v":1,"o":"ab","t":"logs","ids":["1"]}'), undefined)
    assert.equal(decodeClusterEvent('not json'), undefined)
  })

  it('carries the digests of the reports devices were written with, paired with their ids, and takes digests that do not pair as none', () => {
    const ids = Array.from({length: 450}, (_, index) => 1_000_000_000 + index)
    const digests = ids.map((id) => `${'A-_z9'.repeat(4)}${String(id).slice(-2)}`)
    const payloads = encodeClusterEvent('0123456789abcdef', {type: 'devices', ids, digests})
    assert.ok(payloads.length > 1 && payloads.every((payload) => Buffer.byteLength(payload) <= MAX_PAYLOAD_BYTES))
    const decoded = payloads.map((payload) => decodeClusterEvent(payload)?.event as {ids: number[]; digests: string[]})
    assert.deepEqual(decoded.flatMap((event) => event.ids), ids)
    assert.deepEqual(decoded.flatMap((event) => event.digests), digests)
    // An older instance knows no `d`: it forgets the devices. So does this one when the digests are not sound.
    for (const d of ['[""]', '["aa","bb"]', '["a b"]', '[7]', '"aa"', `["${'a'.repeat(44)}"]`]) {
      assert.deepEqual(decodeClusterEvent(`{"v":1,"o":"ab","t":"devices","ids":[3],"d":${d}}`)?.event, {type: 'devices', ids: [3]}, d)
    }
  })

  it('splits an event naming many devices into payloads under NOTIFY\u2019s 8000 bytes', () => {
    const ids = Array.from({length: 5000}, (_, index) => 2_000_000_000 + index)
    const payloads = encodeClusterEvent('0123456789abcdef', {type: 'logs', ids})
    assert.ok(payloads.length > 1)
    for (const payload of payloads) assert.ok(Buffer.byteLength(payload) <= MAX_PAYLOAD_BYTES, `${Buffer.byteLength(payload)} bytes`)
    assert.deepEqual(payloads.flatMap((payload) => (decodeClusterEvent(payload)?.event as {ids: number[]}).ids), ids)
  })
})

for (const dialect of DIALECTS) {
  describe(`cluster bus on ${dialect}`, () => {
    let shared: Awaited<ReturnType<typeof sharedLocation>>
    const opened: Array<{db: Db; bus: ClusterBus}> = []
    const errors: string[] = []

    async function instance(): Promise<{bus: ClusterBus; received: ReceivedClusterEvent[]}> {
      const db = await openDatabase(shared.location)
      const bus = await openClusterBus(db, shared.location, (_error, message) => errors.push(message))
      opened.push({db, bus})
      const received: ReceivedClusterEvent[] = []
      bus.subscribe((event) => received.push(event))
      return {bus, received}
    }

    beforeEach(async () => {
      shared = await sharedLocation(dialect)
    })

    afterEach(async () => {
      for (const {db, bus} of opened.splice(0)) {
        await bus.close()
        await db.destroy()
      }

      await shared.remove()
      errors.length = 0
    })

    it('delivers an event of one instance to every other one, never back to its sender', async () => {
      const [a, b, c] = [await instance(), await instance(), await instance()]
      await a.bus.publish({type: 'targets'})
      await b.bus.publish({type: 'devices', ids: [7, 8]})
      await eventually(async () => b.received.length === 1 && c.received.length === 2 && a.received.length === 1, 'the events')
      assert.deepEqual(b.received, [{type: 'targets'}])
      assert.deepEqual(a.received, [{type: 'devices', ids: [7, 8]}])
      assert.deepEqual(c.received, [{type: 'targets'}, {type: 'devices', ids: [7, 8]}])
      assert.deepEqual(errors, [])
    })

    it('delivers every id of an event naming thousands of devices', async () => {
      const [a, b] = [await instance(), await instance()]
      const ids = Array.from({length: 3000}, (_, index) => index + 1)
      await a.bus.publish({type: 'logs', ids})
      const arrived = () => b.received.flatMap((event) => (event.type === 'logs' ? event.ids : []))
      await eventually(async () => arrived().length === ids.length, 'every id')
      assert.deepEqual(arrived(), ids)
    })

    it('keeps the instances apart from those of another database', async () => {
      const a = await instance()
      const other = await sharedLocation(dialect)
      const db = await openDatabase(other.location)
      const stranger = await openClusterBus(db, other.location, () => {})
      const heard: ReceivedClusterEvent[] = []
      stranger.subscribe((event) => heard.push(event))
      const b = await instance()
      try {
        await a.bus.publish({type: 'keys'})
        await eventually(async () => b.received.length === 1, 'the event on the same database')
        assert.deepEqual(heard, [])
      } finally {
        await stranger.close()
        await db.destroy()
        await other.remove()
      }
    })

    if (dialect === 'postgres') {
      it('listens again after its connection drops, tells its handlers to resync, and hears events again', async () => {
        const [a, b] = [await instance(), await instance()]
        ;(b.bus as PostgresBus).dropConnectionForTest()
        await eventually(async () => b.received.some((event) => event.type === 'resync'), 'the resync after reconnecting')
        await a.bus.publish({type: 'keys'})
        await eventually(async () => b.received.some((event) => event.type === 'keys'), 'an event after reconnecting')
        assert.ok(errors.some((message) => /lost its database connection/.test(message)), errors.join('\n'))
      })
    }
  })
}
