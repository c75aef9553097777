import {strict as assert} from 'node:assert'

import type {Db} from '../../../src/server/db/database.js'
import {OS_ORGANIZATION_HANDLE, type OsImageVersion, publishOsImages} from '../../../src/server/os-images.js'
import {closeTestDatabase, DIALECTS, openTestDatabase} from '../../helpers/postgres.js'

const TYPE = 'raspberrypi4-64'

function versionsOf(...names: string[]): OsImageVersion[] {
  return names.map((version) => ({deviceType: TYPE, version, files: [{path: `/images/${TYPE}/${version}/balena.img`, fileType: '.img', size: 1, mtimeMs: 0}]}))
}

for (const dialect of DIALECTS) {
  describe(`OS images published as hostApp releases on ${dialect}`, () => {
    let db: Db

    before(async () => {
      db = await openTestDatabase(dialect)
    })

    after(async () => {
      await closeTestDatabase(db)
    })

    const hostApp = () => db.selectFrom('application').select(['id', 'slug', 'is_host', 'is_public', 'should_track_latest_release', 'should_be_running__release']).where('slug', '=', `${OS_ORGANIZATION_HANDLE}/${TYPE}`).executeTakeFirstOrThrow()
    const releasesOf = (fleetId: number) =>
      db.selectFrom('release').select(['id', 'raw_version', 'semver', 'revision', 'status', 'is_final', 'is_invalidated']).where('belongs_to__application', '=', fleetId).orderBy('id').execute()

    it('publishes each version as a final, successful release, oldest first, invalidates a version gone from the folder, and makes it valid again when it is back', async () => {
      const warnings: string[] = []
      const published = await publishOsImages(db, [...versionsOf('6.0.1', '5.1.20+rev1'), {...versionsOf('1.0.0')[0], deviceType: 'no-such-board'}], (message) => warnings.push(message))
      assert.deepEqual([...published], [TYPE])
      assert.deepEqual(warnings, ['images dir: "no-such-board" is not a known device type — its images are not published'])
      const fleet = await hostApp()
      assert.deepEqual([fleet.is_host, fleet.is_public, fleet.should_track_latest_release, fleet.should_be_running__release], [1, 1, 0, null])
      const first = await releasesOf(fleet.id)
      assert.deepEqual(
        first.map(({id: _id, ...release}) => release),
        [
          {raw_version: '5.1.20+rev1', semver: '5.1.20', revision: 1, status: 'success', is_final: 1, is_invalidated: 0},
          {raw_version: '6.0.1', semver: '6.0.1', revision: null, status: 'success', is_final: 1, is_invalidated: 0},
        ],
      )
      await publishOsImages(db, versionsOf('6.0.1'), assert.fail)
      assert.deepEqual((await releasesOf(fleet.id)).map((release) => [release.id, release.is_invalidated]), [[first[0].id, 1], [first[1].id, 0]])
      await publishOsImages(db, versionsOf('6.0.1', '5.1.20+rev1'), assert.fail)
      assert.deepEqual((await releasesOf(fleet.id)).map((release) => [release.id, release.is_invalidated]), [[first[0].id, 0], [first[1].id, 0]], 'the same releases, valid again')
      assert.equal((await hostApp()).should_be_running__release, null, 'a hostApp fleet runs no release')
    })
  })
}
