import {strict as assert} from 'node:assert'

import type {Kysely} from 'kysely'

import {type Actor, resolveActor} from '../../../src/server/auth/actor.js'
import {createApiKey} from '../../../src/server/auth/api-keys.js'
import {type Db} from '../../../src/server/db/database.js'
import {createUser} from '../../../src/server/db/users.js'
import type {HttpError} from '../../../src/server/http-errors.js'
import {parseODataUrl} from '../../../src/server/odata/parse.js'
import {ODataReader} from '../../../src/server/odata/translate.js'
import {ODataWriter} from '../../../src/server/odata/write.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../helpers/postgres.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
for (const dialect of DIALECTS) {
  describe(`service variables and service installs on ${dialect}`, () => {
    let db: Db
    let ada: Actor
    let bob: Actor
    let deviceKey: Actor
    let fleets: {one: number; two: number; bobs: number}
    let devices: {kitchen: number; hall: number}
    let services: {main: number; side: number; other: number}

    const as = (actor: Actor) => new ODataWriter(db as unknown as Kysely<any>, actor)
    const create = async (actor: Actor, resource: string, values: Record<string, unknown>) => (await as(actor).create(parseODataUrl(`/${resource}`).resource, values)).id as number
    const read = (url: string, actor: Actor) => new ODataReader(db as unknown as Kysely<any>, actor).read(parseODataUrl(url)) as Promise<any[]>
    const installsOf = async (deviceId: number) =>
      (await db.selectFrom('service_install').select('installs__service').where('device', '=', deviceId).orderBy('installs__service').execute()).map((row) => row.installs__service)
    const status = (code: number) => (error: HttpError) => error.statusCode === code

    before(async () => {
      db = await openTestDatabase(dialect)
      const user = async (name: string) => {
        const created = await createUser(db, {email: `${name}@example.com`, username: name, password: 'password1'})
        const actor: Actor = {kind: 'user', actorId: created.actorId, userId: created.id, username: name, email: `${name}@example.com`, via: 'session', authTime: Date.now()}
        return {actor, organization: created.organizationId}
      }

      const a = await user('ada')
      const b = await user('bob')
      ada = a.actor
      bob = b.actor
      const fleet = (actor: Actor, organization: number, name: string) => create(actor, 'application', {app_name: name, organization, is_for__device_type: 1})
      fleets = {one: await fleet(ada, a.organization, 'one'), two: await fleet(ada, a.organization, 'two'), bobs: await fleet(bob, b.organization, 'secret')}
      const kitchen = await create(ada, 'device', {belongs_to__application: fleets.one, is_of__device_type: 1})
      services = {
        main: await create(ada, 'service', {application: fleets.one, service_name: 'main'}),
        side: await create(ada, 'service', {application: fleets.one, service_name: 'side'}),
        other: await create(ada, 'service', {application: fleets.two, service_name: 'other'}),
      }
      const hall = await create(ada, 'device', {belongs_to__application: fleets.one, is_of__device_type: 1})
      devices = {kitchen, hall}
      const actorOf = (await db.selectFrom('device').select('actor').where('id', '=', kitchen).executeTakeFirstOrThrow()).actor
      deviceKey = (await resolveActor(db, new Uint8Array(32), await createApiKey(db, {actorId: actorOf, kind: 'device-api-key'}))) as Actor
    })

    after(async () => {
      await closeTestDatabase(db)
    })

    it('installs every service of the fleet on a device when either is created, and no client may create installs', async () => {
      assert.deepEqual(await installsOf(devices.kitchen), [services.main, services.side], 'services created after the device')
      assert.deepEqual(await installsOf(devices.hall), [services.main, services.side], 'a device created after the services')
      await assert.rejects(create(ada, 'service_install', {device: devices.kitchen, installs__service: services.other}), status(401))
    })

    it('serves the resources with balena navigations both ways', async () => {
      const install = (await read(`/service_install?$filter=device eq ${devices.kitchen} and installs__service eq ${services.main}`, ada))[0]
      await create(ada, 'service_environment_variable', {service: services.main, name: 'MODE', value: 'fleet-main'})
      await create(ada, 'device_service_environment_variable', {service_install: install.id, name: 'MODE', value: 'kitchen-main'})
      const [service] = await read(`/service(${services.main})?$select=service_name&$expand=service_environment_variable($select=name,value),service_install($select=id;$filter=device eq ${devices.kitchen})`, ada)
      assert.deepEqual(service.service_environment_variable, [{name: 'MODE', value: 'fleet-main'}])
      assert.deepEqual(service.service_install, [{id: install.id}])
      const variables = await read(
        `/device_service_environment_variable?$select=name,value&$filter=service_install/any(si:si/device/any(d:d/id eq ${devices.kitchen}))&$expand=service_install($expand=installs__service($select=service_name))`,
        ada,
      )
      assert.equal(variables.length, 1)
      assert.equal(variables[0].value, 'kitchen-main')
      assert.equal(variables[0].service_install[0].installs__service[0].service_name, 'main')
      const [device] = await read(`/device(${devices.kitchen})?$select=id&$expand=service_install($select=id;$expand=device_service_environment_variable($select=name),service($select=service_name))`, ada)
      const mainInstall = device.service_install.find((row: any) => row.id === install.id)
      assert.deepEqual(mainInstall.device_service_environment_variable, [{name: 'MODE'}])
      assert.deepEqual(mainInstall.service, [{service_name: 'main'}])
      const [byService] = await read(`/service_environment_variable?$filter=service/service_name eq 'main'&$select=value`, ada)
      assert.equal(byService.value, 'fleet-main')
    })

    it('validates names like the other variables, and keeps config names off services', async () => {
      for (const name of ['1BAD', 'with-dash', 'BALENA', 'USER', 'BALENA_SUPERVISOR_POLL_INTERVAL', 'RESIN_X']) {
        await assert.rejects(create(ada, 'service_environment_variable', {service: services.main, name, value: 'x'}), status(400), name)
      }

      const install = (await read(`/service_install?$filter=device eq ${devices.hall} and installs__service eq ${services.side}`, ada))[0]
      await assert.rejects(create(ada, 'device_service_environment_variable', {service_install: install.id, name: 'BALENA_X', value: 'x'}), status(400))
      await create(ada, 'service_environment_variable', {service: services.side, name: 'ONCE', value: '1'})
      await assert.rejects(create(ada, 'service_environment_variable', {service: services.side, name: 'ONCE', value: '2'}), status(409))
    })

    it('lets another organization neither see nor change them', async () => {
      assert.deepEqual(await read('/service_environment_variable', bob), [])
      assert.deepEqual(await read('/device_service_environment_variable', bob), [])
      assert.deepEqual(await read('/service_install', bob), [])
      assert.deepEqual(await read(`/service(${services.main})?$expand=service_environment_variable`, bob), [])
      const install = (await read(`/service_install?$filter=device eq ${devices.kitchen} and installs__service eq ${services.main}`, ada))[0]
      await assert.rejects(create(bob, 'service_environment_variable', {service: services.main, name: 'EVIL', value: '1'}), status(401))
      await assert.rejects(create(bob, 'device_service_environment_variable', {service_install: install.id, name: 'EVIL', value: '1'}), status(401))
      await as(bob).update(parseODataUrl('/service_environment_variable?$filter=id gt 0'), {value: 'changed'})
      await as(bob).delete(parseODataUrl('/device_service_environment_variable?$filter=id gt 0'))
      const left = await read('/device_service_environment_variable?$select=value', ada)
      assert.deepEqual(left, [{value: 'kitchen-main'}])
      assert.ok((await read('/service_environment_variable?$select=value', ada)).every((row) => row.value !== 'changed'))
    })

    it("lets a device key read its fleet's service variables and its own device-service variables, and write none", async () => {
      const hallInstall = (await read(`/service_install?$filter=device eq ${devices.hall} and installs__service eq ${services.main}`, ada))[0]
      await create(ada, 'device_service_environment_variable', {service_install: hallInstall.id, name: 'MODE', value: 'hall-main'})
      assert.deepEqual((await read('/device_service_environment_variable?$select=value', deviceKey)).map((row) => row.value), ['kitchen-main'])
      assert.deepEqual((await read('/service_install?$select=device', deviceKey)).map((row) => row.device.__id), [devices.kitchen, devices.kitchen])
      assert.ok((await read('/service_environment_variable', deviceKey)).length > 0)
      await assert.rejects(create(deviceKey, 'service_environment_variable', {service: services.main, name: 'X', value: '1'}), status(401))
      await assert.rejects(as(deviceKey).update(parseODataUrl('/device_service_environment_variable?$filter=id gt 0'), {value: 'mine'}), status(401))
    })

    it("moves a device's installs to its new fleet, dropping the old fleet's device-service variables", async () => {
      await as(ada).update(parseODataUrl(`/device(${devices.hall})`), {belongs_to__application: fleets.two})
      assert.deepEqual(await installsOf(devices.hall), [services.other])
      assert.deepEqual((await read('/device_service_environment_variable?$select=value', ada)).map((row) => row.value), ['kitchen-main'])
    })
  })
}
