import {strict as assert} from 'node:assert'

import type {Kysely} from 'kysely'

import type {Actor} from '../../../../src/server/auth/actor.js'
import type {Db} from '../../../../src/server/db/database.js'
import {createUser} from '../../../../src/server/db/users.js'
import {now} from '../../../../src/server/db/values.js'
import {HttpError} from '../../../../src/server/http-errors.js'
import {parseODataUrl} from '../../../../src/server/odata/parse.js'
import {ODataWriter} from '../../../../src/server/odata/write.js'
import {mayMove, RELEASE_STATUSES, ReleaseLifecycle, ReleaseTransitionError} from '../../../../src/server/releases/lifecycle.js'
import {eventually} from '../../../helpers/fleet-api.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../../helpers/postgres.js'

describe('the release lifecycle', () => {
  it('lets only a running release end, once, in any ended status', () => {
    for (const to of RELEASE_STATUSES) assert.equal(mayMove('running', to), true, `running → ${to}`)
    for (const from of RELEASE_STATUSES.filter((status) => status !== 'running')) {
      for (const to of RELEASE_STATUSES) assert.equal(mayMove(from, to), from === to, `${from} → ${to}`)
    }
  })
})

/* eslint-disable @typescript-eslint/no-explicit-any -- the writer reaches every table */
for (const dialect of DIALECTS) {
  describe(`the release lifecycle on ${dialect}`, () => {
    let db: Db
    let owner: Extract<Actor, {kind: 'user'}>
    let organization: number
    let fleets = 0
    let signals: number
    let releases: ReleaseLifecycle

    const writer = () => new ODataWriter(db as unknown as Kysely<any>, owner)
    const targetOf = async (fleetId: number) => (await db.selectFrom('application').select('should_be_running__release').where('id', '=', fleetId).executeTakeFirstOrThrow()).should_be_running__release
    const statusOf = async (releaseId: number) => (await db.selectFrom('release').select('status').where('id', '=', releaseId).executeTakeFirstOrThrow()).status
    const refusedTransition = (error: unknown) => error instanceof ReleaseTransitionError && error.statusCode === 400

    async function newFleet(fields: Record<string, unknown> = {}): Promise<number> {
      const fleet = await writer().create(parseODataUrl('/application').resource, {app_name: `fleet${++fleets}`, organization, is_for__device_type: 1, ...fields})
      return fleet.id as number
    }

    /** A running image of the release, as the builder makes one when a service's build starts. */
    async function addRunningImage(fleetId: number, releaseId: number): Promise<number> {
      const service = await db.insertInto('service').values({created_at: now(), application: fleetId, service_name: `main${releaseId}`}).returning('id').executeTakeFirstOrThrow()
      const image = await db
        .insertInto('image')
        .values({created_at: now(), is_a_build_of__service: service.id, is_stored_at__image_location: `registry.test/v2/${releaseId}`, status: 'running', start_timestamp: now()})
        .returning('id')
        .executeTakeFirstOrThrow()
      await db.insertInto('image__is_part_of__release').values({created_at: now(), image: image.id, is_part_of__release: releaseId}).execute()
      return image.id
    }

    const imageOf = (imageId: number) => db.selectFrom('image').select(['status', 'end_timestamp', 'error_message']).where('id', '=', imageId).executeTakeFirstOrThrow()

    before(async () => {
      db = await openTestDatabase(dialect)
      const user = await createUser(db, {email: 'ada@example.com', username: 'ada', password: 'password1'})
      owner = {kind: 'user', actorId: user.actorId, userId: user.id, username: 'ada', email: 'ada@example.com', via: 'session', authTime: Date.now()}
      organization = user.organizationId
    })

    after(async () => {
      await closeTestDatabase(db)
    })

    beforeEach(() => {
      signals = 0
      releases = new ReleaseLifecycle(db, () => signals++)
    })

    it('creates a running build, and a successful one becomes the target of its fleet, telling of changed targets once', async () => {
      const fleetId = await newFleet()
      const releaseId = await releases.createBuild({fleetId, userId: owner.userId, draft: false})
      assert.equal(await statusOf(releaseId), 'running')
      assert.equal(await targetOf(fleetId), null)
      await releases.finish(releaseId, {status: 'success', buildLog: 'built', composition: {services: {main: {}}}})
      const release = await db.selectFrom('release').select(['status', 'build_log', 'composition', 'end_timestamp']).where('id', '=', releaseId).executeTakeFirstOrThrow()
      assert.deepEqual([release.status, release.build_log, JSON.parse(release.composition ?? 'null')], ['success', 'built', {services: {main: {}}}])
      assert.ok(release.end_timestamp)
      assert.equal(await targetOf(fleetId), releaseId)
      assert.equal(signals, 1)
    })

    it('refuses to end an ended release again with a typed error, and takes the same ending again as done', async () => {
      const fleetId = await newFleet()
      const releaseId = await releases.createBuild({fleetId, userId: owner.userId, draft: false})
      await releases.fail(releaseId, 'the Dockerfile broke')
      assert.equal(await statusOf(releaseId), 'failed')
      await assert.rejects(releases.finish(releaseId, {status: 'success', buildLog: 'built'}), (error: unknown) => refusedTransition(error) && /release \d+ is failed: it cannot become success/.test((error as Error).message))
      await releases.fail(releaseId, 'again')
      const release = await db.selectFrom('release').select(['status', 'build_log']).where('id', '=', releaseId).executeTakeFirstOrThrow()
      assert.deepEqual([release.status, release.build_log], ['failed', '[Error] the Dockerfile broke'])
      assert.equal(await targetOf(fleetId), null)
      assert.equal(signals, 0)
    })

    it('promotes a release only when it is newer than the target: an older build ending last leaves the newer one the target', async () => {
      const fleetId = await newFleet()
      const older = await releases.createBuild({fleetId, userId: owner.userId, draft: false})
      const newer = await releases.createBuild({fleetId, userId: owner.userId, draft: false})
      await releases.finish(newer, {status: 'success', buildLog: ''})
      await releases.finish(older, {status: 'success', buildLog: ''})
      assert.equal(await statusOf(older), 'success')
      assert.equal(await targetOf(fleetId), newer)
      assert.equal(signals, 1, 'only the promotion told of changed targets')
    })

    it('leaves a pinned fleet on its release, and a draft is never a target until finalized', async () => {
      const pinnedFleet = await newFleet({should_track_latest_release: false})
      const pinned = await releases.createBuild({fleetId: pinnedFleet, userId: owner.userId, draft: false})
      await releases.finish(pinned, {status: 'success', buildLog: ''})
      assert.equal(await targetOf(pinnedFleet), null)
      const fleetId = await newFleet()
      const draft = await releases.createBuild({fleetId, userId: owner.userId, draft: true})
      await releases.finish(draft, {status: 'success', buildLog: ''})
      assert.equal(await targetOf(fleetId), null)
      assert.equal(signals, 0)
      await writer().update(parseODataUrl(`/release(${draft})`), {is_final: true})
      assert.equal(await targetOf(fleetId), draft)
      await assert.rejects(writer().update(parseODataUrl(`/release(${draft})`), {is_final: false}), (error: unknown) => refusedTransition(error) && /cannot become a draft again/.test((error as Error).message))
    })

    it('marks builds left running by a stopped server interrupted, with their unfinished images, and nothing else', async () => {
      const fleetId = await newFleet()
      const built = await releases.createBuild({fleetId, userId: owner.userId, draft: false})
      const builtImage = await addRunningImage(fleetId, built)
      await db.updateTable('image').set({status: 'success'}).where('id', '=', builtImage).execute()
      await releases.finish(built, {status: 'success', buildLog: ''})
      const running = await releases.createBuild({fleetId, userId: owner.userId, draft: false})
      const runningImage = await addRunningImage(fleetId, running)
      const local = await writer().create(parseODataUrl('/release').resource, {belongs_to__application: fleetId, status: 'running', source: 'local'})
      assert.deepEqual(await new ReleaseLifecycle(db).interruptUnfinishedBuilds(), [running])
      assert.deepEqual([await statusOf(built), await statusOf(running), await statusOf(local.id as number)], ['success', 'interrupted', 'running'])
      const image = await imageOf(runningImage)
      assert.deepEqual([image.status, image.error_message], ['interrupted', 'the server stopped during the build'])
      assert.ok(image.end_timestamp)
      assert.equal((await imageOf(builtImage)).status, 'success')
      assert.equal(await targetOf(fleetId), built)
    })

    it('interrupts only the builds of instances that stopped, when servers share the database: a live one builds on, and clients\' deploys are left alone', async () => {
      const seen = (msAgo: number) => new Date(Date.now() - msAgo).toISOString()
      await db.insertInto('server_instance').values([
        {id: 'alive', internal_url: 'http://127.0.0.1:1', started_at: seen(60_000), last_seen_at: seen(0)},
        {id: 'stopped', internal_url: 'http://127.0.0.1:2', started_at: seen(60_000), last_seen_at: seen(40_000)},
      ]).execute()
      try {
        const fleetId = await newFleet()
        const onAlive = new ReleaseLifecycle(db, () => undefined, 'alive')
        const building = await onAlive.createBuild({fleetId, userId: owner.userId, draft: false})
        const cutOff = await new ReleaseLifecycle(db, () => undefined, 'stopped').createBuild({fleetId, userId: owner.userId, draft: false})
        const cutOffImage = await addRunningImage(fleetId, cutOff)
        const deployed = await writer().create(parseODataUrl('/release').resource, {belongs_to__application: fleetId})
        assert.deepEqual(await onAlive.interruptBuildsOfStoppedInstances(seen(20_000)), [cutOff])
        assert.deepEqual([await statusOf(building), await statusOf(cutOff), await statusOf(deployed.id as number)], ['running', 'interrupted', 'running'])
        assert.equal((await imageOf(cutOffImage)).status, 'interrupted')
        assert.deepEqual(await onAlive.interruptBuildsOfStoppedInstances(seen(20_000)), [], 'once')
        await onAlive.finish(building, {status: 'success', buildLog: ''})
        assert.deepEqual(await db.selectFrom('release_build').select('release').where('release', 'in', [building, cutOff]).execute(), [], 'an ended build leaves no row')
      } finally {
        await db.deleteFrom('server_instance').where('id', 'in', ['alive', 'stopped']).execute()
      }
    })

    if (dialect === 'sqlite') {
      it('interrupts every unfinished build once the only server starts, whichever instance recorded it, and the releases clients were deploying', async () => {
        const fleetId = await newFleet()
        const here = await releases.createBuild({fleetId, userId: owner.userId, draft: false})
        const elsewhere = await new ReleaseLifecycle(db, () => undefined, 'elsewhere').createBuild({fleetId, userId: owner.userId, draft: false})
        const image = await addRunningImage(fleetId, elsewhere)
        const deployed = await writer().create(parseODataUrl('/release').resource, {belongs_to__application: fleetId})
        const errors: unknown[] = []
        const interruptions = await new ReleaseLifecycle(db, () => undefined, 'starting').startInterruptingCutOffBuilds({onError: (error) => errors.push(error)})
        interruptions.stop()
        assert.deepEqual([await statusOf(here), await statusOf(elsewhere), (await imageOf(image)).status, await statusOf(deployed.id as number)], ['interrupted', 'interrupted', 'interrupted', 'interrupted'])
        assert.deepEqual(errors, [])
      })
    }

    if (dialect === 'postgres') {
      it('interrupts the builds of an instance that stopped, at start and by a sweep while running, and leaves those of live instances', async () => {
        const seen = (msAgo: number) => new Date(Date.now() - msAgo).toISOString()
        const instance = (id: string, msAgo: number) => ({id, internal_url: 'http://127.0.0.1:1', started_at: seen(60_000), last_seen_at: seen(msAgo)})
        await db.insertInto('server_instance').values([instance('live', 0), instance('stopping', 0), instance('stopped', 40_000)]).execute()
        const fleetId = await newFleet()
        const buildOn = (instanceId: string) => new ReleaseLifecycle(db, () => undefined, instanceId).createBuild({fleetId, userId: owner.userId, draft: false})
        const [onLive, onStopping, onStopped] = [await buildOn('live'), await buildOn('stopping'), await buildOn('stopped')]
        const errors: unknown[] = []
        const interruptions = await new ReleaseLifecycle(db, () => undefined, 'starting').startInterruptingCutOffBuilds({onError: (error) => errors.push(error), sweepMs: 50})
        try {
          assert.deepEqual([await statusOf(onLive), await statusOf(onStopping), await statusOf(onStopped)], ['running', 'running', 'interrupted'], 'at start')
          await db.updateTable('server_instance').set({last_seen_at: seen(40_000)}).where('id', '=', 'stopping').execute()
          await eventually(async () => (await statusOf(onStopping)) === 'interrupted', 'the sweep to interrupt the build of the instance that stopped')
          assert.equal(await statusOf(onLive), 'running')
          assert.deepEqual(errors, [])
        } finally {
          interruptions.stop()
          if ((await statusOf(onLive)) === 'running') await releases.finish(onLive, {status: 'cancelled', buildLog: ''})
          await db.deleteFrom('server_instance').where('id', 'in', ['live', 'stopping', 'stopped']).execute()
        }
      })
    }

    it('records a release finished from the start, final, successful and the target when newer, and invalidates it or makes it valid again', async () => {
      const fleetId = await newFleet()
      const recorded = (commit: string, rawVersion: string) => releases.recordFinished({fleetId, commit, rawVersion, semver: rawVersion.replace(/\+rev\d+$/, ''), revision: 1})
      const older = await recorded('a'.repeat(32), '5.1.20+rev1')
      const release = await db.selectFrom('release').selectAll().where('id', '=', older).executeTakeFirstOrThrow()
      assert.deepEqual(
        [release.commit, release.status, release.is_final, release.is_invalidated, release.semver, release.revision, release.raw_version, release.is_created_by__user],
        ['a'.repeat(32), 'success', 1, 0, '5.1.20', 1, '5.1.20+rev1', null],
      )
      assert.ok(release.end_timestamp)
      assert.deepEqual([await targetOf(fleetId), signals], [older, 1])
      const newer = await recorded('b'.repeat(32), '6.0.1+rev1')
      assert.deepEqual([await targetOf(fleetId), signals], [newer, 2])
      await releases.setInvalidated(older, true)
      assert.equal((await db.selectFrom('release').select('is_invalidated').where('id', '=', older).executeTakeFirstOrThrow()).is_invalidated, 1)
      await writer().update(parseODataUrl(`/application(${fleetId})`), {should_be_running__release: null})
      await releases.setInvalidated(older, false)
      assert.equal((await db.selectFrom('release').select('is_invalidated').where('id', '=', older).executeTakeFirstOrThrow()).is_invalidated, 0)
      assert.deepEqual([await targetOf(fleetId), signals], [older, 3], 'valid again and newer than no target')
      await releases.setInvalidated(newer, false)
      assert.deepEqual([await targetOf(fleetId), signals], [newer, 4])
    })

    it('ends the unfinished images of a build that failed with it', async () => {
      const fleetId = await newFleet()
      const releaseId = await releases.createBuild({fleetId, userId: owner.userId, draft: false})
      const imageId = await addRunningImage(fleetId, releaseId)
      await releases.fail(releaseId, 'the builder crashed')
      assert.equal((await imageOf(imageId)).status, 'failed')
    })

    it('applies the same rules to releases clients create and end through the API, as balena deploy does', async () => {
      const fleetId = await newFleet()
      const resource = parseODataUrl('/release').resource
      const deployed = await writer().create(resource, {belongs_to__application: fleetId, composition: {services: {main: {}}}})
      assert.deepEqual([deployed.status, deployed.is_final], ['running', true])
      const newer = await releases.createBuild({fleetId, userId: owner.userId, draft: false})
      await releases.finish(newer, {status: 'success', buildLog: ''})
      await writer().update(parseODataUrl(`/release(${deployed.id})`), {status: 'success', end_timestamp: now()})
      assert.equal(await targetOf(fleetId), newer, 'an older release finished through the API is not promoted over a newer target')
      await assert.rejects(writer().update(parseODataUrl(`/release(${deployed.id})`), {status: 'running'}), refusedTransition)
      await assert.rejects(writer().update(parseODataUrl(`/release(${deployed.id})`), {status: 'built'}), (error: HttpError) => error.statusCode === 400 && /release.status must be one of running, success/.test(error.message))
      await assert.rejects(writer().create(resource, {belongs_to__application: fleetId, status: 'built'}), (error: HttpError) => error.statusCode === 400)
      const latest = await writer().create(resource, {belongs_to__application: fleetId})
      await writer().update(parseODataUrl(`/release(${latest.id})`), {status: 'success'})
      assert.equal(await targetOf(fleetId), latest.id)
      await writer().update(parseODataUrl(`/release(${newer})`), {note: 'looked at', status: 'success'})
      assert.equal(await targetOf(fleetId), latest.id, 'a change of an older release leaves the target')
      const cancelled = await writer().create(resource, {belongs_to__application: fleetId})
      await writer().update(parseODataUrl(`/release(${cancelled.id})`), {status: 'cancelled'})
      await assert.rejects(releases.finish(cancelled.id as number, {status: 'success', buildLog: ''}), refusedTransition)
      assert.equal(await targetOf(fleetId), latest.id, 'a cancelled release never becomes the target')
    })
  })
}
