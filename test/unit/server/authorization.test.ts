import {strict as assert} from 'node:assert'

import type {Kysely} from 'kysely'

import {type Actor, resolveActor} from '../../../src/server/auth/actor.js'
import {createApiKey} from '../../../src/server/auth/api-keys.js'
import {mayAccessDevice} from '../../../src/server/authorization.js'
import {type Db} from '../../../src/server/db/database.js'
import {createUser} from '../../../src/server/db/users.js'
import {HttpError} from '../../../src/server/http-errors.js'
import {parseODataUrl} from '../../../src/server/odata/parse.js'
import {ODataReader} from '../../../src/server/odata/translate.js'
import {ODataWriter} from '../../../src/server/odata/write.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../helpers/postgres.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
for (const dialect of DIALECTS) {
  describe(`authorization of keys on ${dialect}`, () => {
    let db: Db
    let owner: Actor
    let provisioning: Actor
    let device: Actor
    let outsider: Actor
    let fleets: number[]
    const secret = new Uint8Array(32)

    const read = (url: string, actor: Actor) => new ODataReader(db as unknown as Kysely<any>, actor).read(parseODataUrl(url))

    before(async () => {
      db = await openTestDatabase(dialect)
      const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
      owner = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
      const stranger = await createUser(db, {email: 'eve@example.com', username: 'eve', password: 'password1'})
      outsider = {kind: 'user', actorId: stranger.actorId, userId: stranger.id, username: 'eve', email: 'eve@example.com', via: 'session', authTime: Date.now()}
      const writer = new ODataWriter(db as unknown as Kysely<any>, owner)
      const fleet = (name: string) => writer.create(parseODataUrl('/application').resource, {app_name: name, organization: user.organizationId, is_for__device_type: 1})
      fleets = [(await fleet('one')).id as number, (await fleet('two')).id as number]
      const devices = []
      for (const application of fleets) devices.push(await writer.create(parseODataUrl('/device').resource, {belongs_to__application: application, is_of__device_type: 1}))
      await writer.create(parseODataUrl('/device_environment_variable').resource, {device: devices[1].id, name: 'OTHER', value: 'x'})
      const fleetActor = (await db.selectFrom('application').select('actor').where('id', '=', fleets[0]).executeTakeFirstOrThrow()).actor
      provisioning = (await resolveActor(db, secret, await createApiKey(db, {actorId: fleetActor, kind: 'provisioning-api-key'}))) as Actor
      const deviceActor = (await db.selectFrom('device').select('actor').where('id', '=', devices[0].id as number).executeTakeFirstOrThrow()).actor
      device = (await resolveActor(db, secret, await createApiKey(db, {actorId: deviceActor, kind: 'device-api-key'}))) as Actor
    })

    after(async () => {
      await closeTestDatabase(db)
    })

    it('resolves keys to their actors, and expired or unknown keys to none', async () => {
      assert.equal(provisioning.kind, 'application')
      assert.equal(device.kind, 'device')
      const expired = await createApiKey(db, {actorId: owner.kind === 'user' ? owner.actorId : 0, kind: 'named-user-api-key', expiryDate: '2001-01-01T00:00:00Z'})
      assert.equal(await resolveActor(db, secret, expired), undefined)
      assert.equal(await resolveActor(db, secret, 'x'.repeat(32)), undefined)
    })

    it('lets a device key see only its own device, and its fleet read-only', async () => {
      assert.equal(((await read('/device', device)) as any[]).length, 1)
      assert.deepEqual(((await read('/application', device)) as any[]).map((row) => row.id), [fleets[0]])
      assert.deepEqual(await read('/device_environment_variable', device), [])
      assert.deepEqual(await read('/user', device), [])
      await assert.rejects(new ODataWriter(db as unknown as Kysely<any>, device).update(parseODataUrl(`/application(${fleets[0]})`), {app_name: 'mine'}), (error: HttpError) => error.statusCode === 401)
      await assert.rejects(new ODataWriter(db as unknown as Kysely<any>, device).update(parseODataUrl('/device?$filter=id gt 0'), {belongs_to__application: fleets[1]}), (error: HttpError) => error.statusCode === 401)
      await new ODataWriter(db as unknown as Kysely<any>, device).update(parseODataUrl('/device?$filter=id gt 0'), {status: 'Idle'})
      assert.deepEqual(((await read('/device?$select=status&$orderby=id asc', owner)) as any[]).map((row) => row.status), ['Idle', null])
    })

    it('lets a device make itself a key and its owners make it one, never a provisioning key or another device', async () => {
      const [own, other] = (await db.selectFrom('device').select('id').orderBy('id').execute()).map((row) => row.id)
      assert.equal(await mayAccessDevice(db, device, own, 'create-key'), true)
      assert.equal(await mayAccessDevice(db, device, other, 'create-key'), false)
      assert.equal(await mayAccessDevice(db, owner, other, 'create-key'), true)
      assert.equal(await mayAccessDevice(db, provisioning, own, 'create-key'), false)
      assert.equal(await mayAccessDevice(db, outsider, own, 'create-key'), false)
    })

    it("shows a user their own keys and their fleets' and devices' keys, an outsider none of them, and keys none", async () => {
      await createApiKey(db, {actorId: owner.kind === 'user' ? owner.actorId : 0, kind: 'named-user-api-key', name: 'mine'})
      const kinds = async (actor: Actor) => {
        const rows = (await read('/api_key?$select=is_of__actor', actor)) as any[]
        const actorKinds = await db.selectFrom('actor').select(['id', 'kind']).execute()
        return [...new Set(rows.map((row) => actorKinds.find((entry) => entry.id === row.is_of__actor.__id)?.kind))].sort()
      }

      assert.deepEqual(await kinds(owner), ['application', 'device', 'user'])
      assert.deepEqual(await kinds(outsider), [])
      assert.deepEqual(await kinds(provisioning), [])
      assert.deepEqual(await kinds(device), [])
    })

    it('lets a provisioning key see its fleet only and write nothing through pine', async () => {
      assert.deepEqual(((await read('/application', provisioning)) as any[]).map((row) => row.id), [fleets[0]])
      assert.deepEqual(await read('/device', provisioning), [])
      await assert.rejects(new ODataWriter(db as unknown as Kysely<any>, provisioning).create(parseODataUrl('/device').resource, {belongs_to__application: fleets[0], is_of__device_type: 1}), (error: HttpError) => error.statusCode === 401)
    })
  })
}
