import {strict as assert} from 'node:assert'

import type {Kysely} from 'kysely'

import type {StoredLogLine} from '../../../src/protocol/log-line.js'
import type {Actor} from '../../../src/server/auth/actor.js'
import {type Db, openDatabase} from '../../../src/server/db/database.js'
import {createUser} from '../../../src/server/db/users.js'
import {DeviceLogStore, logLineOf} from '../../../src/server/device-logs.js'
import {parseODataUrl} from '../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../src/server/odata/write.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
describe('DeviceLogStore', () => {
  let db: Db
  let devices: number[]
  const line = (message: string) => ({message, timestamp: 1, isSystem: false, isStdErr: false})

  before(async () => {
    db = await openDatabase(':memory:')
    const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
    const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
    const writer = new ODataWriter(db as unknown as Kysely<any>, owner)
    const fleet = await writer.create(parseODataUrl('/application').resource, {app_name: 'logs', organization: user.organizationId, is_for__device_type: 1})
    devices = []
    for (let index = 0; index < 2; index++) devices.push((await writer.create(parseODataUrl('/device').resource, {belongs_to__application: fleet.id, is_of__device_type: 1})).id as number)
  })

  after(async () => {
    await db.destroy()
  })

  it("publishes a device's lines to its subscribers before they are stored, with increasing ids", async () => {
    const store = new DeviceLogStore(db)
    const seen: StoredLogLine[] = []
    const others: StoredLogLine[] = []
    const unsubscribe = store.subscribe(devices[0], (stored) => seen.push(stored))
    store.subscribe(devices[1], (stored) => others.push(stored))
    await store.append(devices[0], [line('a'), line('b')])
    assert.deepEqual(seen.map((stored) => stored.message), ['a', 'b'])
    assert.equal(await db.selectFrom('device_log').select('id').executeTakeFirst(), undefined)
    assert.ok(seen[1].id! > seen[0].id!)
    assert.deepEqual(others, [])
    unsubscribe()
    await store.append(devices[0], [line('c')])
    assert.equal(seen.length, 2)
    const history = await store.history(devices[0], {count: 'all'})
    assert.deepEqual(history.map((stored) => stored.message), ['a', 'b', 'c'])
    assert.deepEqual((await store.history(devices[0], {count: 'all', since: seen[0].id})).map((stored) => stored.message), ['b', 'c'])
    assert.deepEqual((await store.history(devices[0], {count: 1})).map((stored) => stored.message), ['c'])
  })

  it('keeps the retention per device and continues the ids of an earlier store', async () => {
    const store = new DeviceLogStore(db, {retention: 3})
    await store.append(devices[1], [line('1'), line('2'), line('3'), line('4'), line('5')])
    const kept = await store.history(devices[1], {count: 'all'})
    assert.deepEqual(kept.map((stored) => stored.message), ['3', '4', '5'])
    assert.equal((await store.history(devices[0], {count: 'all'})).length, 3)
    assert.ok(kept[0].id! > 3)
  })

  it('accepts only log lines, cutting long messages', () => {
    assert.equal(logLineOf({timestamp: 1}), undefined)
    assert.equal(logLineOf('text'), undefined)
    assert.equal(logLineOf({message: 'x'.repeat(10_001), timestamp: 5, serviceId: 3})?.message.length, 10_000)
    assert.deepEqual(logLineOf({message: 'm', timestamp: 5, isSystem: true, serviceId: 3}), {message: 'm', timestamp: 5, isSystem: true, isStdErr: false, serviceId: 3})
  })
})
