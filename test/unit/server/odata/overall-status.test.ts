import {strict as assert} from 'node:assert'

import type {Kysely} from 'kysely'

import type {Actor} from '../../../../src/server/auth/actor.js'
import {type Db} from '../../../../src/server/db/database.js'
import {createUser} from '../../../../src/server/db/users.js'
import {now} from '../../../../src/server/db/values.js'
import {overallStatusSql} from '../../../../src/server/odata/overall-status.js'
import {parseODataUrl} from '../../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../../src/server/odata/write.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../../helpers/postgres.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
for (const dialect of DIALECTS) {
  describe(`device overall_status (balena's computed status) on ${dialect}`, () => {
    let db: Db
    let writer: ODataWriter
    let fleetId: number

    const create = (resource: string, values: Record<string, unknown>) => writer.create(parseODataUrl(`/${resource}`).resource, values)

    /** A device of the fleet in the given state; answers its overall status as the server computes it. */
    async function statusOf(state: Record<string, unknown>, extra?: (deviceId: number) => Promise<void>): Promise<string> {
      const device = await create('device', {belongs_to__application: fleetId, is_of__device_type: 1})
      if (Object.keys(state).length > 0) await db.updateTable('device').set(state).where('id', '=', device.id as number).execute()
      await extra?.(device.id as number)
      const row = await db.selectFrom('device').select(overallStatusSql('device').as('overall_status')).where('id', '=', device.id as number).executeTakeFirstOrThrow()
      return row.overall_status
    }

    const heard = {last_connectivity_event: now()}

    before(async () => {
      db = await openTestDatabase(dialect)
      const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
      const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
      writer = new ODataWriter(db as unknown as Kysely<any>, owner)
      fleetId = (await create('application', {app_name: 'sensors', organization: user.organizationId, is_for__device_type: 1})).id as number
    })

    after(() => closeTestDatabase(db))

    it('is configuring for a device never heard from, disconnected once it was and went silent, inactive when deactivated', async () => {
      assert.equal(await statusOf({}), 'configuring')
      assert.equal(await statusOf({...heard, api_heartbeat_state: 'offline'}), 'disconnected')
      assert.equal(await statusOf({...heard, api_heartbeat_state: 'unknown'}), 'disconnected')
      assert.equal(await statusOf({is_active: 0, is_connected_to_vpn: 1, api_heartbeat_state: 'online'}), 'inactive')
    })

    it('is operational with both the heartbeat and the link up, and reduced-functionality with only one of them', async () => {
      assert.equal(await statusOf({...heard, api_heartbeat_state: 'online', is_connected_to_vpn: 1}), 'operational')
      assert.equal(await statusOf({...heard, api_heartbeat_state: 'timeout', is_connected_to_vpn: 1}), 'reduced-functionality')
      assert.equal(await statusOf({...heard, api_heartbeat_state: 'offline', is_connected_to_vpn: 1}), 'reduced-functionality')
      assert.equal(await statusOf({...heard, api_heartbeat_state: 'online', is_connected_to_vpn: 0}), 'reduced-functionality')
    })

    it('is operational without the link when the device is told to keep it down (BALENA_SUPERVISOR_VPN_CONTROL=false)', async () => {
      const withoutLink = {...heard, api_heartbeat_state: 'online', is_connected_to_vpn: 0}
      assert.equal(await statusOf(withoutLink, (device) => create('device_config_variable', {device, name: 'BALENA_SUPERVISOR_VPN_CONTROL', value: 'false'}).then(() => undefined)), 'operational')
    })

    it('is updating while the device or one of its images downloads', async () => {
      const online = {...heard, api_heartbeat_state: 'online', is_connected_to_vpn: 1}
      assert.equal(await statusOf({...online, status: 'Downloading', download_progress: 40}), 'updating')
      const imageDownloading = async (device: number) => {
        await db.insertInto('image_install').values({created_at: now(), device, installs__image: await anImage(), install_date: now(), status: 'Downloading', download_progress: 10, is_provided_by__release: null} as any).execute()
      }

      assert.equal(await statusOf(online, imageDownloading), 'updating')
      assert.equal(await statusOf({...heard, api_heartbeat_state: 'offline'}, imageDownloading), 'disconnected')
    })

    async function anImage(): Promise<number> {
      const release = await create('release', {belongs_to__application: fleetId})
      const service = await create('service', {application: fleetId, service_name: `s${release.id}`})
      const image = await create('image', {is_a_build_of__service: service.id})
      await create('image__is_part_of__release', {image: image.id, is_part_of__release: release.id})
      return image.id as number
    }
  })
}
