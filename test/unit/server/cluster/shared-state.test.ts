import {strict as assert} from 'node:assert'

import type {Kysely} from 'kysely'

import {type FlotillaServer, createServer} from '../../../../src/server/app.js'
import type {Actor} from '../../../../src/server/auth/actor.js'
import {createApiKey} from '../../../../src/server/auth/api-keys.js'
import {createUser} from '../../../../src/server/db/users.js'
import {parseODataUrl} from '../../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../../src/server/odata/write.js'
import {eventually} from '../../../helpers/fleet-api.js'
import {DIALECTS} from '../../../helpers/postgres.js'
import {sharedLocation} from './shared-database.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
const line = (message: string) => JSON.stringify({message, timestamp: 1, isSystem: false, isStdErr: false})

for (const dialect of DIALECTS) {
  describe(`two server instances on one ${dialect} database`, () => {
    let shared: Awaited<ReturnType<typeof sharedLocation>>
    let a: FlotillaServer
    let b: FlotillaServer
    let userKey: string
    let fleetId: number
    let device: {id: number; uuid: string; key: string}

    beforeEach(async () => {
      shared = await sharedLocation(dialect)
      const options = 'url' in (shared.location as object) ? {databaseUrl: (shared.location as {url: string}).url} : {dataDir: (shared.location as {dataDir: string}).dataDir}
      a = await createServer({...options, logger: {level: 'silent'}, logStreamHeartbeatMs: 100})
      b = await createServer({...options, logger: {level: 'silent'}, logStreamHeartbeatMs: 100})
      const user = await createUser(a.db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
      userKey = await createApiKey(a.db, {actorId: user.actorId, kind: 'named-user-api-key'})
      const owner: Actor = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
      const writer = new ODataWriter(a.db as unknown as Kysely<any>, owner)
      fleetId = (await writer.create(parseODataUrl('/application').resource, {app_name: 'shared', organization: user.organizationId, is_for__device_type: 1})).id as number
      const created = await writer.create(parseODataUrl('/device').resource, {belongs_to__application: fleetId, is_of__device_type: 1})
      const {actor} = await a.db.selectFrom('device').select('actor').where('id', '=', created.id as number).executeTakeFirstOrThrow()
      device = {id: created.id as number, uuid: created.uuid as string, key: await createApiKey(a.db, {actorId: actor, kind: 'device-api-key'})}
    })

    afterEach(async () => {
      await a.close()
      await b.close()
      await shared.remove()
    })

    const poll = (server: FlotillaServer) => server.app.inject({method: 'GET', url: `/device/v3/${device.uuid}/state`, headers: {authorization: `Bearer ${device.key}`}})

    it('refuses on one instance, at once, a key revoked through the other', async () => {
      assert.equal((await poll(b)).statusCode, 200, 'the key is known (and kept) on B')
      const {id: keyId} = await a.db.selectFrom('api_key').select('id').where('kind', '=', 'device-api-key').executeTakeFirstOrThrow()
      const revoked = await a.app.inject({method: 'DELETE', url: `/v7/api_key(${keyId})`, headers: {authorization: `Bearer ${userKey}`}})
      assert.equal(revoked.statusCode, 200, revoked.body)
      // The revocation is told before A answers; B's listener hears it within moments, well before a client could ask.
      await eventually(async () => (await poll(b)).statusCode === 401, 'B refusing the revoked key', 2000)
    })

    it('serves on one instance the target a release made through the other gives the device', async () => {
      const before = await poll(b)
      const etag = before.headers.etag as string
      assert.equal((await b.app.inject({method: 'GET', url: `/device/v3/${device.uuid}/state`, headers: {authorization: `Bearer ${device.key}`, 'if-none-match': etag}})).statusCode, 304, 'kept on B')
      const release = await a.app.inject({method: 'POST', url: '/v7/release', headers: {authorization: `Bearer ${userKey}`}, payload: {belongs_to__application: fleetId, commit: 'c0ffee', status: 'success', composition: {}}})
      assert.equal(release.statusCode, 201, release.body)
      const pin = await a.app.inject({method: 'PATCH', url: `/v7/application(${fleetId})`, headers: {authorization: `Bearer ${userKey}`}, payload: {should_be_running__release: release.json<{id: number}>().id}})
      assert.equal(pin.statusCode, 200, pin.body)
      const changed = await eventually(async () => {
        const answer = await poll(b)
        return answer.headers.etag !== etag && answer
      }, 'B serving the new target', 5000)
      assert.match(changed.body, /c0ffee/)
    })

    it('stores a numbered log batch once when it is sent again to the other instance, and shows it to the other\u2019s followers', async () => {
      const followed: string[] = []
      const follower = await a.app.inject({method: 'GET', url: `/device/v2/${device.uuid}/logs?stream=1`, headers: {authorization: `Bearer ${userKey}`}, payloadAsStream: true})
      follower.stream().setEncoding('utf8').on('data', (chunk: string) => followed.push(...chunk.split('\n').filter(Boolean).map((text) => (JSON.parse(text) as {message: string}).message)))
      const send = (server: FlotillaServer) =>
        server.app.inject({method: 'POST', url: `/device/v2/${device.uuid}/log-stream`, headers: {authorization: `Bearer ${device.key}`, 'content-type': 'application/x-ndjson', 'x-flotilla-log-batch': 'abcdef01/1'}, payload: [line('one'), line('two')].join('\n')})
      assert.equal((await send(b)).statusCode, 201)
      assert.equal((await send(a)).statusCode, 201, 'the retry is answered as stored')
      const rows = await a.db.selectFrom('device_log').select('message').where('device', '=', device.id).orderBy('id').execute()
      assert.deepEqual(rows.map((row) => row.message), ['one', 'two'])
      await eventually(async () => followed.length === 2, 'A\u2019s follower seeing the lines B stored', 5000)
      assert.deepEqual(followed, ['one', 'two'])
    })

    it('writes a report repeated to one instance after the device reported otherwise to the other', async () => {
      const report = (server: FlotillaServer, status: string) =>
        server.app.inject({method: 'PATCH', url: '/device/v3/state', headers: {authorization: `Bearer ${device.key}`}, payload: {[device.uuid]: {status}}})
      const stored = async () => (await a.db.selectFrom('device').select('status').where('id', '=', device.id).executeTakeFirstOrThrow()).status
      assert.equal((await report(a, 'Idle')).statusCode, 200)
      assert.equal((await report(b, 'Updating')).statusCode, 200)
      assert.equal(await stored(), 'Updating')
      // A heard that B wrote the device: the report A had last is no longer what the row holds.
      await eventually(async () => {
        assert.equal((await report(a, 'Idle')).statusCode, 200)
        return (await stored()) === 'Idle'
      }, 'A writing the report again', 5000)
    })

    it('takes a report repeated alternately through both instances (a balancer sharing its requests) as a heartbeat once each wrote it', async () => {
      const report = (server: FlotillaServer) =>
        server.app.inject({method: 'PATCH', url: '/device/v3/state', headers: {authorization: `Bearer ${device.key}`}, payload: {[device.uuid]: {status: 'Idle'}}})
      const stored = async () => (await a.db.selectFrom('device').select('status').where('id', '=', device.id).executeTakeFirstOrThrow()).status
      // Changed by hand, told to no instance: a report an instance writes puts 'Idle' back, one it takes as a heartbeat does not.
      const tamper = () => a.db.updateTable('device').set({status: 'by hand'}).where('id', '=', device.id).execute()
      assert.equal((await report(a)).statusCode, 200)
      assert.equal((await report(b)).statusCode, 200, 'B had no report of the device yet: it writes it')
      // Once A heard that B wrote the report A wrote last (the row holds what A would write), neither writes it again.
      await eventually(async () => {
        await tamper()
        for (const server of [a, b, a, b]) assert.equal((await report(server)).statusCode, 200)
        return (await stored()) === 'by hand'
      }, 'both instances taking the repeated report as a heartbeat', 5000)
    })

    it('hands an action sent through one instance to the device collecting from the other, once', async () => {
      assert.equal((await poll(b)).statusCode, 200, 'the poll makes the device online')
      const collecting = b.app.inject({method: 'GET', url: `/device/v3/${device.uuid}/actions?wait=10`, headers: {authorization: `Bearer ${device.key}`}})
      const sent = await a.app.inject({method: 'POST', url: '/supervisor/v1/restart', headers: {authorization: `Bearer ${userKey}`}, payload: {uuid: device.uuid, data: {appId: fleetId}}})
      assert.equal(sent.statusCode, 200, sent.body)
      const started = Date.now()
      const collected = (await collecting).json<unknown[]>()
      assert.equal(collected.length, 1, 'the waiting collect on B woke with the action')
      assert.ok(Date.now() - started < 5000)
      const again = await a.app.inject({method: 'GET', url: `/device/v3/${device.uuid}/actions`, headers: {authorization: `Bearer ${device.key}`}})
      assert.deepEqual(again.json(), [], 'handed out once')
    })

    it('serves through one instance a release asset uploaded through the other, from the database', async () => {
      const owner = await a.db.selectFrom('user').select(['id', 'actor']).where('username', '=', 'ada').executeTakeFirstOrThrow()
      const writer = new ODataWriter(a.db as unknown as Kysely<any>, {kind: 'user', actorId: owner.actor, userId: owner.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()})
      const release = await writer.create(parseODataUrl('/release').resource, {belongs_to__application: fleetId})
      const form = new FormData()
      form.set('release', String(release.id))
      form.set('asset_key', 'notes')
      form.set('asset', new File(['notes of the release'], 'notes.txt', {type: 'text/plain'}))
      const body = new Request('http://upload/', {method: 'POST', body: form})
      const headers = {authorization: `Bearer ${userKey}`, 'content-type': body.headers.get('content-type') as string}
      const uploaded = await a.app.inject({method: 'POST', url: '/v7/release_asset', headers, payload: Buffer.from(await body.arrayBuffer())})
      assert.equal(uploaded.statusCode, 201, uploaded.body)
      const href = new URL(uploaded.json().asset.href)
      const downloaded = await b.app.inject({method: 'GET', url: `${href.pathname}${href.search}`})
      assert.deepEqual([downloaded.statusCode, downloaded.body], [200, 'notes of the release'])
    })
  })
}
