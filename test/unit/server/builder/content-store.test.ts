import {strict as assert} from 'node:assert'
import {createHash} from 'node:crypto'
import {existsSync, mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {Readable} from 'node:stream'
import {gzipSync} from 'node:zlib'

import {pack} from 'tar-stream'

import {createProjectIgnore} from '../../../../src/project/ignore.js'
import {BuildContentStore} from '../../../../src/server/builder/content-store.js'
import {DEFAULT_UPLOAD_LIMITS, UploadedProject} from '../../../../src/server/builder/upload.js'

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

async function gzipTar(entries: Array<{name: string; content?: string; pax?: Record<string, string>}>): Promise<Readable> {
  const archive = pack()
  for (const {content, ...header} of entries) archive.entry({type: 'file', mode: 0o644, ...header}, content ?? '')
  archive.finalize()
  const chunks: Buffer[] = []
  for await (const chunk of archive) chunks.push(chunk as Buffer)
  return Readable.from([gzipSync(Buffer.concat(chunks))])
}

describe('BuildContentStore', () => {
  let root: string
  let spools: string

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'flotilla-contents-'))
    spools = mkdtempSync(path.join(tmpdir(), 'flotilla-contents-spool-'))
  })

  afterEach(() => {
    rmSync(root, {recursive: true, force: true})
    rmSync(spools, {recursive: true, force: true})
  })

  /** One upload of the fleet, through the store as the build route uses it. */
  async function pushTo(store: BuildContentStore, fleetId: number, entries: Array<{name: string; content?: string; pax?: Record<string, string>}>): Promise<UploadedProject> {
    const upload = await store.openUpload(fleetId)
    const project = await UploadedProject.receive(await gzipTar(entries), DEFAULT_UPLOAD_LIMITS, spools, upload.known)
    try {
      await upload.record(project)
      await upload.store(project, (name) => name === '.balena/registry-secrets.json')
      return project
    } finally {
      await upload.end()
    }
  }

  it('lets a later upload refer to stored contents, which read back as they were sent', async () => {
    const store = new BuildContentStore(root)
    await (await pushTo(store, 1, [{name: 'a.txt', content: 'alpha'}])).dispose()
    const project = await pushTo(store, 1, [{name: 'again.txt', pax: {'FLOTILLA.sha256': sha256('alpha'), 'FLOTILLA.size': '5'}}])
    try {
      assert.equal(await project.readText('again.txt'), 'alpha')
      assert.deepEqual(project.summary, {receivedFiles: 0, receivedBytes: 0, storedFiles: 1, storedBytes: 5})
      // The same file sent in full makes the same context: the digest goes by contents, however they arrived.
      const sent = await pushTo(store, 1, [{name: 'again.txt', content: 'alpha'}])
      assert.equal(project.contextDigest('.', createProjectIgnore('')), sent.contextDigest('.', createProjectIgnore('')))
      await sent.dispose()
    } finally {
      await project.dispose()
    }
  })

  it("keeps only the contents of the fleet's latest uploads, and never the registry secrets", async () => {
    const store = new BuildContentStore(root, 2)
    for (const version of ['one', 'two', 'three']) {
      await (await pushTo(store, 7, [{name: 'app.js', content: version}, {name: 'shared.js', content: 'shared'}, {name: '.balena/registry-secrets.json', content: '{}'}])).dispose()
    }

    assert.deepEqual(await store.missing(7, [sha256('one'), sha256('two'), sha256('three'), sha256('shared'), sha256('{}')]), [sha256('one'), sha256('{}')])
    const blobs = readdirSync(path.join(root, '7', 'blobs'), {recursive: true, withFileTypes: true}).filter((entry) => entry.isFile())
    assert.deepEqual(blobs.map((entry) => entry.name).sort(), [sha256('two'), sha256('three'), sha256('shared')].sort())
    assert.equal(readdirSync(path.join(root, '7', 'uploads')).length, 2)
    // A store opened afresh (a restarted server) reads the same from the disk.
    assert.deepEqual(await new BuildContentStore(root, 2).missing(7, [sha256('one'), sha256('two')]), [sha256('one')])
  })

  it("removes a deleted fleet's contents, and no other fleet's", async () => {
    const store = new BuildContentStore(root)
    await (await pushTo(store, 1, [{name: 'a.txt', content: 'alpha'}])).dispose()
    await (await pushTo(store, 2, [{name: 'a.txt', content: 'alpha'}])).dispose()
    await store.removeFleet(1)
    assert.deepEqual(readdirSync(root), ['2'])
    assert.deepEqual(await store.missing(2, [sha256('alpha')]), [])
  })

  it('removes the contents of a fleet deleted during an upload once that upload ends, whatever the upload stored after', async () => {
    const store = new BuildContentStore(root)
    const upload = await store.openUpload(3)
    const project = await UploadedProject.receive(await gzipTar([{name: 'a.txt', content: 'alpha'}]), DEFAULT_UPLOAD_LIMITS, spools, upload.known)
    try {
      await upload.record(project)
      await store.removeFleet(3)
      await upload.store(project, () => false)
      assert.ok(existsSync(path.join(root, '3')), 'the open upload still uses the folder')
      await upload.end()
      assert.deepEqual(readdirSync(root), [])
    } finally {
      await project.dispose()
    }
  })
})
