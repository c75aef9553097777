import {strict as assert} from 'node:assert'

import type {Kysely} from 'kysely'

import type {Actor} from '../../../src/server/auth/actor.js'
import {type Db, openDatabase} from '../../../src/server/db/database.js'
import {createUser} from '../../../src/server/db/users.js'
import {computeTargetState, entityTagOf} from '../../../src/server/device-target.js'
import {parseODataUrl} from '../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../src/server/odata/write.js'
import {TargetStates} from '../../../src/server/target-states.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
describe('kept target states', () => {
  let db: Db
  let writer: ODataWriter
  let fleetId: number

  const create = (resource: string, values: Record<string, unknown>) => writer.create(parseODataUrl(`/${resource}`).resource, values)
  const newDevice = async (name: string) => (await create('device', {belongs_to__application: fleetId, is_of__device_type: 1, device_name: name})).id as number
  const live = async (deviceId: number) => {
    const body = JSON.stringify(await computeTargetState(db, deviceId))
    return {body, etag: entityTagOf(body)}
  }

  before(async () => {
    db = await openDatabase(':memory:')
    const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
    const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
    writer = new ODataWriter(db as unknown as Kysely<any>, owner)
    fleetId = (await create('application', {app_name: 'kept', organization: user.organizationId, is_for__device_type: 1})).id as number
  })

  after(async () => {
    await db.destroy()
  })

  it('serves what a live computation gives, keeps it, and computes afresh once invalidated', async () => {
    const targets = new TargetStates(db)
    const deviceId = await newDevice('first')
    await create('device_environment_variable', {device: deviceId, name: 'A', value: '1'})
    assert.deepEqual(await targets.of(deviceId), await live(deviceId))
    await create('application_config_variable', {application: fleetId, name: 'BALENA_X', value: '1'})
    const kept = await targets.of(deviceId)
    assert.notDeepEqual(kept, await live(deviceId), 'without invalidate() the kept target stays as it was')
    targets.invalidate()
    assert.deepEqual(await targets.of(deviceId), await live(deviceId))
  })

  it('serves a device registered after its block of devices was read, and nothing for a device that does not exist', async () => {
    const targets = new TargetStates(db)
    const first = await newDevice('early')
    await targets.of(first)
    const later = await newDevice('late')
    assert.equal(Math.floor(first / 256), Math.floor(later / 256), 'both devices in one block')
    assert.deepEqual(await targets.of(later), await live(later))
    assert.equal(await targets.of(later + 1000), undefined)
  })
})
