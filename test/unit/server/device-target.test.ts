import {strict as assert} from 'node:assert'

import type {Kysely} from 'kysely'

import type {Actor} from '../../../src/server/auth/actor.js'
import {type Db} from '../../../src/server/db/database.js'
import {markSilentDevicesOffline} from '../../../src/server/db/devices.js'
import {ensureServiceInstalls} from '../../../src/server/db/service-installs.js'
import {createUser} from '../../../src/server/db/users.js'
import {now} from '../../../src/server/db/values.js'
import {computeFleetTargetState, computeTargetState, entityTagOf, imageReferenceOf, matchesEntityTag, targetStateV2Of} from '../../../src/server/device-target.js'
import {parseODataUrl} from '../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../src/server/odata/write.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../helpers/postgres.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
for (const dialect of DIALECTS) {
  describe(`device target state on ${dialect}`, () => {
    let db: Db
    let writer: ODataWriter
    let fleetId: number
    let fleetUuid: string
    let deviceId: number
    let deviceUuid: string

    const create = (resource: string, values: Record<string, unknown>) => writer.create(parseODataUrl(`/${resource}`).resource, values)

    async function addRelease(commit: string, services: Record<string, {pushed: boolean}>, composition: unknown): Promise<number> {
      const release = await db
        .insertInto('release')
        .values({
          created_at: now(),
          belongs_to__application: fleetId,
          commit,
          composition: JSON.stringify(composition),
          status: 'success',
          source: 'cloud',
          build_log: null,
          start_timestamp: null,
          end_timestamp: null,
          is_final: 1,
          semver: '0.0.0',
          is_invalidated: 0,
          note: null,
          is_created_by__user: null,
        })
        .returning('id')
        .executeTakeFirstOrThrow()
      for (const [name, {pushed}] of Object.entries(services)) {
        const service = await db.selectFrom('service').select('id').where('application', '=', fleetId).where('service_name', '=', name).executeTakeFirst()
        const serviceId = service?.id ?? (await db.insertInto('service').values({created_at: now(), application: fleetId, service_name: name}).returning('id').executeTakeFirstOrThrow()).id
        const image = await db
          .insertInto('image')
          .values({
            created_at: now(),
            is_a_build_of__service: serviceId,
            is_stored_at__image_location: `registry.test/v2/${commit}${name}`,
            content_hash: 'sha256:abc',
            status: 'success',
            push_timestamp: pushed ? now() : null,
            image_size: null,
            start_timestamp: null,
            end_timestamp: null,
            dockerfile: null,
            project_type: null,
            error_message: null,
            build_log: null,
          })
          .returning('id')
          .executeTakeFirstOrThrow()
        await db.insertInto('image__is_part_of__release').values({created_at: now(), image: image.id, is_part_of__release: release.id}).execute()
      }

      return release.id
    }

    before(async () => {
      db = await openTestDatabase(dialect)
      const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
      const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
      writer = new ODataWriter(db as unknown as Kysely<any>, owner)
      const fleet = await create('application', {app_name: 'sensors', organization: user.organizationId, is_for__device_type: 1})
      fleetId = fleet.id as number
      fleetUuid = fleet.uuid as string
      const device = await create('device', {belongs_to__application: fleetId, is_of__device_type: 1, device_name: 'kitchen'})
      deviceId = device.id as number
      deviceUuid = device.uuid as string
    })

    after(async () => {
      await closeTestDatabase(db)
    })

    it('has no releases while the fleet has no target, and carries config variables, the device over the fleet', async () => {
      await create('application_config_variable', {application: fleetId, name: 'BALENA_SUPERVISOR_POLL_INTERVAL', value: '60000'})
      await create('application_config_variable', {application: fleetId, name: 'BALENA_HOST_CONFIG_gpu_mem', value: '16'})
      await create('device_config_variable', {device: deviceId, name: 'BALENA_HOST_CONFIG_gpu_mem', value: '64'})
      const target = (await computeTargetState(db, deviceId))!
      const device = target[deviceUuid]
      assert.equal(device.name, 'kitchen')
      assert.deepEqual(device.config, {BALENA_HOST_CONFIG_gpu_mem: '64', BALENA_SUPERVISOR_POLL_INTERVAL: '60000'})
      assert.deepEqual(device.apps[fleetUuid], {id: fleetId, name: 'sensors', is_host: false, class: 'fleet'})
      assert.equal(await computeTargetState(db, 9999), undefined)
    })

    it("targets the fleet's release, with merged environment, labels, composition and volumes", async () => {
      const composition = {
        version: '2.4',
        services: {main: {image: 'main', labels: ['io.example=1'], environment: {FROM_COMPOSE: 'c'}}, side: {labels: {'io.other': 'x'}}},
        volumes: {data: {}, cache: null},
      }
      const releaseId = await addRelease('a'.repeat(32), {main: {pushed: true}, side: {pushed: false}}, composition)
      await db.updateTable('application').set({should_be_running__release: releaseId}).where('id', '=', fleetId).execute()
      await create('application_environment_variable', {application: fleetId, name: 'LEVEL', value: 'fleet'})
      await create('application_environment_variable', {application: fleetId, name: 'FLEET_ONLY', value: 'f'})
      await create('device_environment_variable', {device: deviceId, name: 'LEVEL', value: 'device'})
      const release = (await computeTargetState(db, deviceId))![deviceUuid].apps[fleetUuid].releases!['a'.repeat(32)]
      assert.equal(release.id, releaseId)
      assert.deepEqual(Object.keys(release.services), ['main', 'side'])
      assert.equal(release.services.main.image, `registry.test/v2/${'a'.repeat(32)}main@sha256:abc`)
      assert.equal(release.services.side.image, `registry.test/v2/${'a'.repeat(32)}side:latest`)
      assert.deepEqual(release.services.main.environment, {FLEET_ONLY: 'f', LEVEL: 'device'})
      assert.deepEqual(release.services.main.labels, {'io.example': '1'})
      assert.deepEqual(release.services.side.labels, {'io.other': 'x'})
      assert.deepEqual(release.services.main.composition, composition.services.main)
      assert.deepEqual(release.volumes, {data: {}, cache: {}})
    })

    it("runs the device's pin over the fleet's target", async () => {
      const pinned = await addRelease('b'.repeat(32), {main: {pushed: true}}, {services: {main: {}}})
      await db.updateTable('device').set({is_pinned_on__release: pinned}).where('id', '=', deviceId).execute()
      const releases = (await computeTargetState(db, deviceId))![deviceUuid].apps[fleetUuid].releases!
      assert.deepEqual(Object.keys(releases), ['b'.repeat(32)])
      await db.updateTable('device').set({is_pinned_on__release: null}).where('id', '=', deviceId).execute()
    })

    it("merges each service's environment lowest first: fleet, service, device, then the device's for that service", async () => {
      // addRelease inserts its services directly, as the builder does; the builder then creates their installs like this.
      const services = await db.selectFrom('service').select(['id', 'service_name']).where('application', '=', fleetId).execute()
      await ensureServiceInstalls(db, {serviceIds: services.map((service) => service.id)})
      const main = services.find((service) => service.service_name === 'main')!.id
      const install = await db.selectFrom('service_install').select('id').where('device', '=', deviceId).where('installs__service', '=', main).executeTakeFirstOrThrow()
      await create('application_environment_variable', {application: fleetId, name: 'SERVICE_OVER_FLEET', value: 'fleet'})
      await create('service_environment_variable', {service: main, name: 'SERVICE_OVER_FLEET', value: 'service'})
      await create('service_environment_variable', {service: main, name: 'DEVICE_OVER_SERVICE', value: 'service'})
      await create('service_environment_variable', {service: main, name: 'LEVEL', value: 'service'})
      await create('device_environment_variable', {device: deviceId, name: 'DEVICE_OVER_SERVICE', value: 'device'})
      await create('device_environment_variable', {device: deviceId, name: 'DEVICE_SERVICE_OVER_DEVICE', value: 'device'})
      await create('device_service_environment_variable', {service_install: install.id, name: 'DEVICE_SERVICE_OVER_DEVICE', value: 'device-service'})
      await create('device_service_environment_variable', {service_install: install.id, name: 'LEVEL', value: 'device-service'})
      const neighbour = await create('device', {belongs_to__application: fleetId, is_of__device_type: 1, device_name: 'hall'})
      try {
        const release = (await computeTargetState(db, deviceId))![deviceUuid].apps[fleetUuid].releases!['a'.repeat(32)]
        assert.deepEqual(release.services.main.environment, {
          FLEET_ONLY: 'f',
          SERVICE_OVER_FLEET: 'service',
          DEVICE_OVER_SERVICE: 'device',
          DEVICE_SERVICE_OVER_DEVICE: 'device-service',
          LEVEL: 'device-service',
        })
        assert.deepEqual(release.services.side.environment, {FLEET_ONLY: 'f', SERVICE_OVER_FLEET: 'fleet', DEVICE_OVER_SERVICE: 'device', DEVICE_SERVICE_OVER_DEVICE: 'device', LEVEL: 'device'})
        const other = (await computeTargetState(db, neighbour.id as number))![neighbour.uuid as string].apps[fleetUuid].releases!['a'.repeat(32)]
        assert.deepEqual(other.services.main.environment, {FLEET_ONLY: 'f', SERVICE_OVER_FLEET: 'service', DEVICE_OVER_SERVICE: 'service', LEVEL: 'service'})
        assert.deepEqual(other.services.side.environment, {FLEET_ONLY: 'f', SERVICE_OVER_FLEET: 'fleet', LEVEL: 'fleet'})
      } finally {
        await db.deleteFrom('device').where('id', '=', neighbour.id as number).execute()
      }
    })

    it("gives a fleet's target without a device: the fleet's config and release, fleet and service variables only, or a release named", async () => {
      const fleet = (await computeFleetTargetState(db, fleetId))!
      assert.deepEqual(Object.keys(fleet), [fleetUuid])
      const {name, config, apps} = fleet[fleetUuid]
      assert.equal(name, 'sensors')
      assert.deepEqual(config, {BALENA_HOST_CONFIG_gpu_mem: '16', BALENA_SUPERVISOR_POLL_INTERVAL: '60000'})
      const main = apps[fleetUuid].releases!['a'.repeat(32)].services.main
      assert.deepEqual(main.environment, {FLEET_ONLY: 'f', SERVICE_OVER_FLEET: 'service', DEVICE_OVER_SERVICE: 'service', LEVEL: 'service'})
      const named = (await computeFleetTargetState(db, fleetId, await releaseIdOf('b'.repeat(32))))!
      assert.deepEqual(Object.keys(named[fleetUuid].apps[fleetUuid].releases!), ['b'.repeat(32)])
      assert.equal(await computeFleetTargetState(db, 9999), undefined)
    })

    it("gives a device's target in balena's v2 shape: apps by id, services by id with their composition, image and running", async () => {
      const v2 = targetStateV2Of((await computeTargetState(db, deviceId))!)
      const app = v2.local.apps[String(fleetId)]
      assert.deepEqual([v2.local.name, app.name, app.commit, app.releaseId], ['kitchen', 'sensors', 'a'.repeat(32), await releaseIdOf('a'.repeat(32))])
      assert.deepEqual(v2.dependent, {apps: {}, devices: {}})
      const main = Object.values(app.services).find((service) => service.serviceName === 'main')!
      assert.equal(main.image, `registry.test/v2/${'a'.repeat(32)}main@sha256:abc`)
      assert.equal(main.running, true)
      assert.equal(main.environment.LEVEL, 'device-service')
      assert.deepEqual(main.labels, {'io.example': '1'}, 'the merged labels over the composition\'s list')
      assert.equal(typeof main.imageId, 'number')
      assert.deepEqual(app.volumes, {data: {}, cache: {}})
      const empty = targetStateV2Of({d: {name: 'x', config: {}, apps: {u: {id: 3, name: 'idle', is_host: false, class: 'fleet'}}}})
      assert.deepEqual(empty.local.apps, {3: {name: 'idle', services: {}, volumes: {}, networks: {}}})
    })

    const releaseIdOf = async (commit: string) => (await db.selectFrom('release').select('id').where('commit', '=', commit).executeTakeFirstOrThrow()).id

    it('tags bodies strongly and matches If-None-Match lists and weak forms', () => {
      const tag = entityTagOf('{"a":1}')
      assert.notEqual(tag, entityTagOf('{"a":2}'))
      assert.ok(matchesEntityTag(`"x", W/${tag}`, tag))
      assert.ok(!matchesEntityTag('"x"', tag))
      assert.ok(!matchesEntityTag(undefined, tag))
      assert.equal(imageReferenceOf({location: 'local/v2/h', contentHash: 'sha256:1', pushedAt: null}), 'local/v2/h:latest')
    })

    it('marks devices offline once they are silent past the timeout', async () => {
      await db.updateTable('device').set({is_online: 1, api_heartbeat_state: 'online', last_connectivity_event: new Date(Date.now() - 10_000).toISOString()}).execute()
      assert.equal(await markSilentDevicesOffline(db, 60_000), 0)
      assert.equal(await markSilentDevicesOffline(db, 5000, {exceptIds: [deviceId]}), 0, 'a linked device stays online')
      assert.equal(await markSilentDevicesOffline(db, 5000), 1)
      const device = await db.selectFrom('device').select(['is_online', 'api_heartbeat_state']).where('id', '=', deviceId).executeTakeFirstOrThrow()
      assert.deepEqual({...device, is_online: Number(device.is_online)}, {is_online: 0, api_heartbeat_state: 'offline'})
    })
  })
}
