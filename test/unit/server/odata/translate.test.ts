import {strict as assert} from 'node:assert'

import type {CompiledQuery, Kysely} from 'kysely'

import type {Actor} from '../../../../src/server/auth/actor.js'
import {type Db} from '../../../../src/server/db/database.js'
import {createUser} from '../../../../src/server/db/users.js'
import {now} from '../../../../src/server/db/values.js'
import {HttpError} from '../../../../src/server/http-errors.js'
import {parseODataUrl} from '../../../../src/server/odata/parse.js'
import {ODataReader} from '../../../../src/server/odata/translate.js'
import {ODataWriter} from '../../../../src/server/odata/write.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../../helpers/postgres.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- rows are JSON */
type Row = Record<string, any>

for (const dialect of DIALECTS) {
  describe(`OData → SQL translation (on a real database) on ${dialect}`, () => {
    let db: Db
    let queries: CompiledQuery[]
    let alice: Actor
    let bob: Actor
    const ids: Record<string, number> = {}

    const asUser = (user: {id: number; actorId: number; username: string; email: string}): Actor => ({kind: 'user', actorId: user.actorId, userId: user.id, username: user.username, email: user.email, via: 'session', authTime: Date.now()})

    async function read(url: string, actor: Actor = alice): Promise<any> {
      return new ODataReader(db as unknown as Kysely<any>, actor).read(parseODataUrl(url))
    }

    async function names(url: string, field: string, actor: Actor = alice): Promise<unknown[]> {
      return ((await read(url, actor)) as Row[]).map((row) => row[field])
    }

    async function failure(url: string, actor: Actor = alice): Promise<HttpError> {
      try {
        await read(url, actor)
      } catch (error) {
        assert.ok(error instanceof HttpError, `expected an HTTP error, got ${String(error)}`)
        return error
      }

      assert.fail(`${url} should have failed`)
    }

    before(async () => {
      queries = []
      db = await openTestDatabase(dialect, {log: (event) => void queries.push(event.query)})
      alice = asUser(await createUser(db, {email: 'alice@example.com', username: 'alice', password: 'alice-password'}))
      bob = asUser(await createUser(db, {email: 'bob@example.com', username: 'bob', password: 'bob-password'}))
      const deviceType = async (slug: string) => ((await read(`/device_type?$filter=slug eq '${slug}'`)) as Row[])[0].id
      const create = async (actor: Actor, resource: string, body: Row) => (await new ODataWriter(db as unknown as Kysely<any>, actor).create(parseODataUrl(`/${resource}`).resource, body)).id as number
      const organization = async (actor: Actor) => ((await read('/organization', actor)) as Row[])[0].id
      const rpi = await deviceType('raspberrypi4-64')
      const nuc = await deviceType('intel-nuc')
      ids.alpha = await create(alice, 'application', {app_name: 'alpha', organization: await organization(alice), is_for__device_type: rpi})
      ids.beta = await create(alice, 'application', {app_name: 'Beta', organization: await organization(alice), is_for__device_type: nuc})
      ids.empty = await create(alice, 'application', {app_name: 'empty', organization: await organization(alice), is_for__device_type: nuc})
      ids.gamma = await create(bob, 'application', {app_name: 'gamma', organization: await organization(bob), is_for__device_type: rpi})
      ids.kitchen = await create(alice, 'device', {belongs_to__application: ids.alpha, is_of__device_type: rpi, device_name: 'kitchen', is_online: true, cpu_temp: 40})
      ids.attic = await create(alice, 'device', {belongs_to__application: ids.alpha, is_of__device_type: rpi, device_name: "o'brien's attic", is_online: false, cpu_temp: 55})
      ids.garage = await create(alice, 'device', {belongs_to__application: ids.beta, is_of__device_type: nuc, device_name: 'Garage', is_online: false})
      ids.bobs = await create(bob, 'device', {belongs_to__application: ids.gamma, is_of__device_type: rpi, device_name: 'kitchen', is_online: true})
      await create(alice, 'device_tag', {device: ids.kitchen, tag_key: 'floor', value: '0'})
      await create(alice, 'device_tag', {device: ids.kitchen, tag_key: 'zone', value: 'a'})
      await create(alice, 'device_tag', {device: ids.attic, tag_key: 'floor', value: '2'})
      await create(bob, 'device_tag', {device: ids.bobs, tag_key: 'floor', value: '9'})
    })

    after(async () => {
      await closeTestDatabase(db)
    })

    it('compares with eq, ne, gt, ge, lt, le and combines with and, or, not', async () => {
      assert.deepEqual(await names("/device?$filter=device_name eq 'kitchen'", 'id'), [ids.kitchen])
      assert.deepEqual(await names("/device?$filter=device_name ne 'kitchen'", 'device_name'), ["o'brien's attic", 'Garage'])
      assert.deepEqual(await names('/device?$filter=cpu_temp gt 40', 'device_name'), ["o'brien's attic"])
      assert.deepEqual(await names('/device?$filter=cpu_temp ge 40', 'device_name'), ['kitchen', "o'brien's attic"])
      assert.deepEqual(await names('/device?$filter=cpu_temp lt 55', 'device_name'), ['kitchen'])
      assert.deepEqual(await names('/device?$filter=cpu_temp le 55 and is_online eq false', 'device_name'), ["o'brien's attic"])
      assert.deepEqual(await names("/device?$filter=device_name eq 'Garage' or cpu_temp eq 40", 'device_name'), ['kitchen', 'Garage'])
      assert.deepEqual(await names("/device?$filter=not (device_name eq 'Garage' or cpu_temp eq 40)", 'device_name'), ["o'brien's attic"])
      assert.deepEqual(await names('/device?$filter=cpu_temp eq null', 'device_name'), ['Garage'])
      assert.deepEqual(await names('/device?$filter=cpu_temp ne null', 'device_name'), ['kitchen', "o'brien's attic"])
      assert.deepEqual(await names(`/device?$filter=id in (${ids.kitchen}, ${ids.garage}, ${ids.bobs})`, 'id'), [ids.kitchen, ids.garage])
    })

    it('matches strings with startswith, endswith, contains (case-sensitive) and tolower', async () => {
      assert.deepEqual(await names("/device?$filter=startswith(device_name,'kit')", 'device_name'), ['kitchen'])
      assert.deepEqual(await names("/device?$filter=startswith(device_name,'Kit')", 'device_name'), [])
      assert.deepEqual(await names("/device?$filter=endswith(device_name,'attic')", 'device_name'), ["o'brien's attic"])
      assert.deepEqual(await names("/device?$filter=contains(device_name,'''s a')", 'device_name'), ["o'brien's attic"])
      assert.deepEqual(await names("/device?$filter=contains(device_name,'%25')", 'device_name'), [])
      assert.deepEqual(await names("/device?$filter=tolower(device_name) eq 'garage'", 'device_name'), ['Garage'])
    })

    it('follows to-one navigation paths, also over several hops', async () => {
      assert.deepEqual(await names("/device?$filter=belongs_to__application/slug eq 'alice/alpha'", 'device_name'), ['kitchen', "o'brien's attic"])
      assert.deepEqual(await names("/device?$filter=belongs_to__application/organization/handle eq 'alice' and is_of__device_type/slug eq 'intel-nuc'", 'device_name'), ['Garage'])
      assert.deepEqual(await names("/device?$orderby=belongs_to__application/app_name desc,device_name asc&$select=device_name", 'device_name'), ["kitchen", "o'brien's attic", 'Garage'])
    })

    it('filters with any() and all() over to-many navigations', async () => {
      assert.deepEqual(await names('/application?$filter=owns__device/any(d:d/is_online eq true)', 'app_name'), ['alpha'])
      assert.deepEqual(await names('/application?$filter=owns__device/all(d:d/is_online eq false)', 'app_name'), ['Beta', 'empty'])
      assert.deepEqual(await names("/application?$filter=owns__device/any(d:d/device_tag/any(t:t/tag_key eq 'zone'))", 'app_name'), ['alpha'])
      assert.deepEqual(await names("/application?$filter=is_directly_accessible_by__user/any(u:1 eq 1) and (slug eq 'alice/beta' or uuid eq 'alice/beta')", 'app_name'), ['Beta'])
      assert.deepEqual(await names('/application?$filter=owns__device/$count gt 1', 'app_name'), ['alpha'])
    })

    it('expands navigations with their own $select, $filter, $orderby, $top and nested $expand', async () => {
      const rows = await read(
        `/application(${ids.alpha})?$select=app_name&$expand=owns__device($select=device_name;$orderby=device_name desc;$top=1;$expand=device_tag($select=tag_key,value;$filter=tag_key ne 'zone')),organization($select=handle)`,
      )
      assert.deepEqual(rows, [{app_name: 'alpha', owns__device: [{device_name: "o'brien's attic", device_tag: [{tag_key: 'floor', value: '2'}]}], organization: [{handle: 'alice'}]}])
      const device = (await read(`/device(${ids.kitchen})`))[0]
      assert.deepEqual(device.belongs_to__application, {__id: ids.alpha})
      assert.equal(device.is_online, true)
      assert.equal(device.is_pinned_on__release, null)
      assert.match(device.created_at, /^\d{4}-\d\d-\d\dT/)
      assert.ok(!('password_hash' in (await read('/user'))[0]))
      assert.ok(!('email' in (await read('/user'))[0]))
    })

    it('counts rows and expanded rows', async () => {
      assert.equal(await read('/device/$count'), 3)
      assert.equal(await read('/device/$count?$filter=is_online eq true'), 1)
      const counts = await read('/application?$select=app_name&$expand=owns__device/$count&$orderby=app_name asc')
      assert.deepEqual(counts, [{app_name: 'Beta', owns__device: 1}, {app_name: 'alpha', owns__device: 2}, {app_name: 'empty', owns__device: 0}])
      const online = await read(`/application(${ids.alpha})?$select=app_name&$expand=owns__device/$count($filter=is_online eq true)`)
      assert.deepEqual(online, [{app_name: 'alpha', owns__device: 1}])
      const members = await read(`/application(${ids.alpha})?$select=app_name&$expand=is_directly_accessible_by__user/$count`)
      assert.deepEqual(members, [{app_name: 'alpha', is_directly_accessible_by__user: 1}], 'counted through a link table')
    })

    it('expands through a link table under every parent a row is linked to, and counts it under each', async () => {
      const alicesOrganization = ((await read('/organization', alice)) as Row[])[0].id as number
      const membership = await db.insertInto('organization_membership').values({created_at: now(), user: (bob as Extract<Actor, {kind: 'user'}>).userId, is_member_of__organization: alicesOrganization}).returning('id').executeTakeFirstOrThrow()
      try {
        const url = `/application?$select=app_name&$filter=id in (${ids.alpha}, ${ids.gamma})&$orderby=app_name asc&$expand=is_directly_accessible_by__user($select=username;$orderby=username asc)`
        assert.deepEqual(await read(url, bob), [
          {app_name: 'alpha', is_directly_accessible_by__user: [{username: 'alice'}, {username: 'bob'}]},
          {app_name: 'gamma', is_directly_accessible_by__user: [{username: 'bob'}]},
        ])
        const counts = await read(`/application?$select=app_name&$filter=id in (${ids.alpha}, ${ids.gamma})&$orderby=app_name asc&$expand=is_directly_accessible_by__user/$count`, bob)
        assert.deepEqual(counts, [{app_name: 'alpha', is_directly_accessible_by__user: 2}, {app_name: 'gamma', is_directly_accessible_by__user: 1}])
      } finally {
        await db.deleteFrom('organization_membership').where('id', '=', membership.id).execute()
      }
    })

    it('orders and pages with $orderby, $top and $skip', async () => {
      assert.deepEqual(await names('/device?$orderby=device_name desc', 'device_name'), ["o'brien's attic", 'kitchen', 'Garage'])
      assert.deepEqual(await names('/device?$orderby=device_name asc&$top=2&$skip=1', 'device_name'), ['kitchen', "o'brien's attic"])
      assert.deepEqual(await names('/device?$orderby=id asc&$skip=2', 'id'), [ids.garage])
    })

    it('reads by key: id, natural key and composite key', async () => {
      assert.deepEqual(await names("/organization(handle='alice')", 'handle'), ['alice'])
      assert.deepEqual(await names(`/device_tag(device=${ids.kitchen},tag_key='zone')`, 'value'), ['a'])
      assert.deepEqual(await read(`/device(${ids.bobs})`), [])
    })

    it('keeps values as parameters: quotes and SQL in a value match nothing and change nothing', async () => {
      queries.length = 0
      const injected = "x' or 1=1; drop table device; --"
      assert.deepEqual(await read(`/device?$filter=device_name eq '${injected.replaceAll("'", "''")}'`), [])
      const query = queries.at(-1) as CompiledQuery
      assert.ok(!query.sql.includes('drop table'), query.sql)
      assert.ok(query.parameters.includes(injected))
      assert.equal(await read('/device/$count'), 3)
      assert.deepEqual(await names(`/device?$filter=device_name eq '${encodeURIComponent("o''brien's attic".replace("'s", "''s"))}'`, 'id'), [ids.attic])
    })

    it('answers unknown names and malformed queries with 400-class errors', async () => {
      assert.equal((await failure('/device?$filter=nope eq 1')).statusCode, 400)
      assert.equal((await failure('/device?$select=uuid,nope')).statusCode, 400)
      assert.equal((await failure('/device?$expand=nope')).statusCode, 400)
      assert.equal((await failure('/device?$orderby=nope asc')).statusCode, 400)
      assert.equal((await failure('/nope')).statusCode, 404)
      assert.equal((await failure("/application?$filter=owns__device/device_name eq 'x'")).statusCode, 400)
      assert.equal((await failure("/device?$filter=substring(device_name,1) eq 'x'")).statusCode, 400)
      assert.equal((await failure('/device?$filter=device_name eq')).statusCode, 400)
      assert.match((await failure('/device?$filter=user__has__public_key eq 1')).message, /unknown field/)
    })

    it('scopes every table of a query to what the actor may see', async () => {
      assert.deepEqual(await names('/device', 'device_name', bob), ['kitchen'])
      assert.deepEqual(await read("/device?$filter=belongs_to__application/slug eq 'alice/alpha'", bob), [])
      assert.deepEqual(await read("/device_type?$filter=describes__device/any(d:d/device_name eq 'Garage')", bob), [])
      const tags = await read(`/device_type(slug='raspberrypi4-64')?$select=slug&$expand=describes__device($select=device_name;$expand=device_tag($select=value))`, bob)
      assert.deepEqual(tags, [{slug: 'raspberrypi4-64', describes__device: [{device_name: 'kitchen', device_tag: [{value: '9'}]}]}])
      assert.equal(await read('/device_tag/$count', bob), 1)
      assert.deepEqual(await names('/user?$orderby=username asc', 'username', bob), ['bob'])
    })

    describe('writes', () => {
      const writer = (actor: Actor = alice) => new ODataWriter(db as unknown as Kysely<any>, actor)

      it('recomputes a fleet slug on rename and refuses another organization as parent', async () => {
        await writer().update(parseODataUrl(`/application(${ids.empty})`), {app_name: 'Renamed'})
        assert.deepEqual(await names(`/application(${ids.empty})`, 'slug'), ['alice/renamed'])
        await assert.rejects(writer(bob).create(parseODataUrl('/device').resource, {belongs_to__application: ids.alpha, is_of__device_type: 1}), (error: HttpError) => error.statusCode === 401)
        await assert.rejects(writer().create(parseODataUrl('/application').resource, {app_name: 'alpha', organization: 1, is_for__device_type: 1}), (error: HttpError) => error.statusCode === 409)
      })

      it('stamps last_connectivity_event when is_online is written and resets the pin when a device moves', async () => {
        await writer().update(parseODataUrl(`/device(${ids.garage})`), {is_online: true})
        const [stamped] = await read(`/device(${ids.garage})?$select=is_online,last_connectivity_event`)
        assert.equal(stamped.is_online, true)
        assert.ok(Date.now() - new Date(stamped.last_connectivity_event).getTime() < 60_000)
        await writer().update(parseODataUrl(`/device(${ids.garage})`), {belongs_to__application: ids.alpha})
        assert.deepEqual(await read(`/device(${ids.garage})?$select=is_pinned_on__release,belongs_to__application`), [{is_pinned_on__release: null, belongs_to__application: {__id: ids.alpha}}])
        await assert.rejects(writer().update(parseODataUrl(`/device(${ids.garage})`), {uuid: 'ff'}), (error: HttpError) => error.statusCode === 400)
      })

      it('moves fleets that track the latest release to a final successful one, and pins only such releases', async () => {
        const release = parseODataUrl('/release').resource
        const failed = await writer().create(release, {belongs_to__application: ids.alpha, status: 'failed'})
        const built = await writer().create(release, {belongs_to__application: ids.alpha, status: 'running', composition: {services: {main: {build: '.'}}}})
        assert.deepEqual(built.composition, {services: {main: {build: '.'}}})
        assert.match(String(built.commit), /^[0-9a-f]{32}$/)
        assert.deepEqual(await names(`/application(${ids.alpha})`, 'should_be_running__release'), [null])
        await writer().update(parseODataUrl(`/release(${built.id})?$filter=status ne 'success'`), {status: 'success', end_timestamp: new Date().toISOString()})
        assert.deepEqual(await names(`/application(${ids.alpha})`, 'should_be_running__release'), [{__id: built.id}])
        assert.deepEqual(await names(`/device(${ids.kitchen})`, 'should_be_running__release'), [{__id: built.id}])
        await assert.rejects(writer().update(parseODataUrl(`/device(${ids.kitchen})`), {is_pinned_on__release: failed.id}), (error: HttpError) => error.statusCode === 400)
      })

      it('changes nothing it cannot see', async () => {
        await writer(bob).update(parseODataUrl(`/device?$filter=device_name eq 'kitchen'`), {note: 'bob was here'})
        assert.deepEqual(await names(`/device(${ids.kitchen})`, 'note'), [null])
        await writer(bob).delete(parseODataUrl(`/application(${ids.alpha})`))
        assert.equal((await read(`/application(${ids.alpha})`)).length, 1)
      })
    })
  })
}
