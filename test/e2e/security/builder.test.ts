import {strict as assert} from 'node:assert'
import {createHash, randomBytes} from 'node:crypto'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {gzipSync} from 'node:zlib'

import {type Header, pack} from 'tar-stream'

import type {BuildEvent} from '../../../src/protocol/build-events.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../../helpers/docker.js'
import {FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

type Entry = Partial<Header> & {name: string; content?: string}

async function gzipTar(entries: Entry[]): Promise<Buffer> {
  const archive = pack()
  for (const {content, ...header} of entries) archive.entry({type: 'file', mode: 0o644, ...header}, content ?? '')
  archive.finalize()
  const chunks: Buffer[] = []
  for await (const chunk of archive) chunks.push(chunk as Buffer)
  return gzipSync(Buffer.concat(chunks))
}

/**
 * Attacks on the builder by a user who may build for their own fleet: uploads whose paths and links would read
 * or write outside the build, Dockerfiles that reach the server's loopback, uploads and builds without end.
 */
describe('security: the builder touches nothing outside the upload', function () {
  this.timeout(240_000)
  let main: BuildServer
  let serverTmp: string

  /** A server, its admin's session and a fleet of theirs to build for. */
  interface BuildServer {
    server: TestServer
    api: FleetApi
    token: string
    slug: string
  }

  async function build(body: Buffer, query = '', headers: Record<string, string> = {}, target = main): Promise<{status: number; events: BuildEvent[]; text: string}> {
    const answer = await target.api.call('POST', `/v3/build?slug=${encodeURIComponent(target.slug)}${query}`, {token: target.token, body, headers})
    const events = answer.status === 200 ? (JSON.parse(answer.body) as BuildEvent[]) : []
    return {status: answer.status, events, text: answer.status === 200 ? events.map((event) => ('message' in event ? event.message : '')).join('\n') : answer.body}
  }

  async function startBuildServer(args: string[] = []): Promise<BuildServer> {
    const server = await startServer({env: {TMPDIR: serverTmp}, args})
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'target')
    return {server, api, token, slug: fleet.slug}
  }

  before(async () => {
    serverTmp = mkdtempSync(path.join(tmpdir(), 'flotilla-builder-attack-'))
    main = await startBuildServer()
  })

  after(async () => {
    await main?.server.stop()
    rmSync(serverTmp, {recursive: true, force: true})
  })

  afterEach(() => {
    // Every upload's spool is gone once its build ends, and nothing else was written where the builder works.
    assert.deepEqual(readdirSync(serverTmp), [])
  })

  it('refuses the tar that wrote outside the build folder (d -> ., d/e -> .., e/x/y.txt), naming the entry', async () => {
    const body = await gzipTar([
      {name: 'Dockerfile', content: `FROM ${BASE_IMAGE}\n`},
      {name: 'd', type: 'symlink', linkname: '.'},
      {name: 'd/e', type: 'symlink', linkname: '..'},
      {name: 'e/x/y.txt', content: 'written outside'},
    ])
    const {events, text} = await build(body)
    assert.ok(events.some((event) => 'isError' in event && event.isError), text)
    assert.match(text, /"d\/e" under the link "d"/)
    const releases = (await main.api.call('GET', `/v7/release?$select=status`, {token: main.token})).json().d
    assert.deepEqual(releases.map((release: {status: string}) => release.status), ['failed'])
  })

  it('refuses the tar and dockerfilePath that read /etc/passwd into the image record, and every variant of it', async () => {
    const attacks: Array<[Entry[], string, RegExp]> = [
      [[{name: 'd', type: 'symlink', linkname: '.'}, {name: 'd/d/d/e', type: 'symlink', linkname: '../../..'}], 'e/etc/passwd', /"d\/d\/d\/e" under the link "d"/],
      [[{name: 'e', type: 'symlink', linkname: '/'}], 'e/etc/passwd', /link that escapes it: "e" → "\/"/],
      [[{name: 'e', type: 'symlink', linkname: '.'}, {name: 'up', type: 'symlink', linkname: 'e/../..'}], 'up/etc/passwd', /link that escapes it: "up"/],
      [[{name: 'Dockerfile', content: 'FROM scratch\n'}], '../../../../../../etc/passwd', /not inside the project/],
      [[{name: 'Dockerfile', content: 'FROM scratch\n'}], '/etc/passwd', /not inside the project/],
      [[{name: 'docker-compose.yml', content: 'services:\n  main:\n    build: ../../..\n'}], '', /not a folder inside the project/],
      [[{name: 'docker-compose.yml', content: `services:\n  main:\n    image: ${BASE_IMAGE}\n    env_file: /etc/passwd\n`}], '', /outside the project folder/],
    ]
    for (const [entries, dockerfilePath, message] of attacks) {
      const {text} = await build(await gzipTar(entries), dockerfilePath ? `&dockerfilePath=${encodeURIComponent(dockerfilePath)}` : '')
      assert.match(text, message, `${JSON.stringify(entries)} ${dockerfilePath}`)
    }

    const images = (await main.api.call('GET', '/v7/image?$select=dockerfile', {token: main.token})).json().d as Array<{dockerfile: string | null}>
    assert.equal(images.filter((image) => image.dockerfile?.includes('root:')).length, 0)
  })

  describe('contents kept for re-pushes', () => {
    const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')
    const reference = (name: string, text: string): Entry => ({name, size: 0, pax: {'FLOTILLA.sha256': sha256(text), 'FLOTILLA.size': String(Buffer.byteLength(text))}})
    const missing = async (hashes: string[], target = main) => {
      const answer = await target.api.call('POST', `/v3/build/contents?slug=${encodeURIComponent(target.slug)}`, {token: target.token, json: {sha256: hashes}})
      assert.equal(answer.status, 200, answer.body)
      return answer.json().missing as string[]
    }

    it('refuses contents labelled with another hash, and keeps nothing under it', async () => {
      const genuine = `genuine ${randomBytes(8).toString('hex')}`
      const body = await gzipTar([{name: 'app.js', content: 'evil()', pax: {'FLOTILLA.sha256': sha256(genuine)}}])
      const {text} = await build(body)
      assert.match(text, /labels the contents of "app\.js" with sha256 [\da-f]{64}, but they hash to [\da-f]{64}: refusing mislabelled contents/)
      assert.deepEqual(await missing([sha256(genuine), sha256('evil()')]), [sha256(genuine), sha256('evil()')])
      // Nor can a later upload of the fleet refer to the genuine contents it never sent.
      assert.match((await build(await gzipTar([reference('app.js', genuine)]))).text, /"app\.js" refers to contents \(sha256 [\da-f]{12}…\) that this fleet's builder does not have — push again/)
    })

    it('keeps the contents a fleet sent under the hash the builder computed, for that fleet only', async () => {
      const secret = `the other fleet's secret ${randomBytes(8).toString('hex')}`
      await build(await gzipTar([{name: 'secret.txt', content: secret}]))
      assert.deepEqual(await missing([sha256(secret)]), [], 'the fleet that sent the contents has them')
      // A member of another fleet who learnt the hash gets nothing of them: not even that they exist.
      const otherFleet = await main.api.createFleet(main.token, `other${randomBytes(3).toString('hex')}`)
      const other = {...main, slug: otherFleet.slug}
      assert.deepEqual(await missing([sha256(secret)], other), [sha256(secret)])
      const {text} = await build(await gzipTar([{name: 'Dockerfile', content: `FROM ${BASE_IMAGE}\nCOPY secret.txt /\n`}, reference('secret.txt', secret)]), '', {}, other)
      assert.match(text, /"secret\.txt" refers to contents \(sha256 [\da-f]{12}…\) that this fleet's builder does not have/)
      // And a reference that lies about the size of contents the fleet has is refused too.
      const lying = {...reference('secret.txt', secret), pax: {'FLOTILLA.sha256': sha256(secret), 'FLOTILLA.size': '1'}}
      assert.match((await build(await gzipTar([lying]))).text, /"secret\.txt" refers to stored contents of 1 bytes, but they have \d+/)
    })

    it("removes a fleet's kept contents when the fleet is deleted, and no other fleet's", async () => {
      const contents = `kept for a re-push ${randomBytes(8).toString('hex')}`
      const [deleted, other] = [await main.api.createFleet(main.token, `deleted${randomBytes(3).toString('hex')}`), await main.api.createFleet(main.token, `other${randomBytes(3).toString('hex')}`)]
      for (const fleet of [deleted, other]) await build(await gzipTar([{name: 'app.js', content: contents}]), '', {}, {...main, slug: fleet.slug})
      const folderOf = (fleetId: number) => path.join(main.server.dataDir, 'build-contents', String(fleetId))
      assert.ok(existsSync(folderOf(deleted.id)), 'the builder kept the deleted fleet\'s upload')
      const answer = await main.api.call('DELETE', `/v7/application(${deleted.id})`, {token: main.token})
      assert.equal(answer.status, 200, answer.body)
      assert.ok(!existsSync(folderOf(deleted.id)), 'the deleted fleet\'s contents are gone from the data dir')
      assert.deepEqual(await missing([sha256(contents)], {...main, slug: other.slug}), [], 'the other fleet keeps its own')
    })

    it("keeps a fleet's contents when a user of another organization asks to delete the fleet", async () => {
      const contents = `kept from an outsider ${randomBytes(8).toString('hex')}`
      const fleet = await main.api.createFleet(main.token, `guarded${randomBytes(3).toString('hex')}`)
      await build(await gzipTar([{name: 'app.js', content: contents}]), '', {}, {...main, slug: fleet.slug})
      const outsider = {email: `outsider-${randomBytes(4).toString('hex')}@example.com`, username: `outsider${randomBytes(4).toString('hex')}`, password: `pw-${randomBytes(8).toString('hex')}`}
      await main.server.addUser(outsider)
      const outsiderToken = await main.api.login(outsider.username, outsider.password)
      await main.api.call('DELETE', `/v7/application(${fleet.id})`, {token: outsiderToken})
      assert.ok(existsSync(path.join(main.server.dataDir, 'build-contents', String(fleet.id))), 'the fleet\'s contents are still in the data dir')
      assert.deepEqual(await missing([sha256(contents)], {...main, slug: fleet.slug}), [], 'the fleet still has its kept contents')
    })

    it('removes at start the kept contents of fleets deleted where it did not hear of it, and keeps those of fleets that exist', async () => {
      const restarting = await startBuildServer()
      let restarted: TestServer | undefined
      try {
        const contents = `kept over a restart ${randomBytes(8).toString('hex')}`
        await build(await gzipTar([{name: 'app.js', content: contents}]), '', {}, restarting)
        await restarting.server.stop({keepDataDir: true})
        // A fleet another instance deleted (ids are never reused, so one never created is as gone).
        const gone = path.join(restarting.server.dataDir, 'build-contents', '987654')
        mkdirSync(path.join(gone, 'blobs', 'ab'), {recursive: true})
        writeFileSync(path.join(gone, 'blobs', 'ab', sha256('left behind')), 'left behind')
        restarted = await startServer({env: {TMPDIR: serverTmp}, dataDir: restarting.server.dataDir})
        assert.ok(!existsSync(gone), 'the contents of the fleet that is gone were removed')
        assert.deepEqual(await missing([sha256(contents)], {...restarting, server: restarted, api: new FleetApi(restarted.url)}), [], 'the fleet that exists keeps its own')
      } finally {
        await (restarted ?? restarting.server).stop()
      }
    })

    it('answers a malformed contents query with a 400 naming the shape', async () => {
      const answer = await main.api.call('POST', `/v3/build/contents?slug=${encodeURIComponent(main.slug)}`, {token: main.token, json: {sha256: ['../../etc/passwd']}})
      assert.equal(answer.status, 400)
      assert.match(answer.body, /at most \d+ hashes of 64 lower-case hex digits/)
    })
  })

  it('refuses an upload over --max-upload: at once by its Content-Length, and as it streams without one', async () => {
    const small = await startBuildServer(['--max-upload', '1'])
    try {
      const noise = randomBytes(1536 * 1024)
      const body = await gzipTar([{name: 'Dockerfile', content: 'FROM scratch\n'}, {name: 'noise', content: noise.toString('latin1')}])
      const declared = await build(body, '', {}, small)
      assert.equal(declared.status, 413)
      assert.match(declared.text, /more than the server's limit of 1 MiB .*--max-upload/)

      const chunked = await small.api.call('POST', `/v3/build?slug=${encodeURIComponent(small.slug)}`, {token: small.token, body, headers: {'transfer-encoding': 'chunked'}})
      assert.match(chunked.body, /the upload is larger than 1 MiB .*--max-upload/)
    } finally {
      await small.server.stop()
    }
  })

  describe('builds on the engine', () => {
    before(async () => {
      await ensureDocker()
      await ensureBaseImage()
    })

    it('keeps RUN steps off the server\'s loopback unless the server was started with --build-network host', async () => {
      const port = new URL(main.server.url).port
      // busybox's static wget cannot resolve anything here; nc speaks enough HTTP for /ping.
      const dockerfile = `FROM ${BASE_IMAGE}\nRUN printf 'GET /ping HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 ${port} > /reached; tail -n 1 /reached; grep -q OK /reached\n`
      const body = await gzipTar([{name: 'Dockerfile', content: dockerfile}])
      const isolated = await build(body, '&nocache=true')
      assert.ok(isolated.events.some((event) => 'isError' in event && event.isError), `a build reached the server's loopback:\n${isolated.text}`)
      assert.doesNotMatch(isolated.text, /^\[main\] OK$/m)

      // The same Dockerfile with the host's network reaches it: the refusal above is the isolation, not a broken test.
      const open = await startBuildServer(['--build-network', 'host'])
      try {
        const hostPort = new URL(open.server.url).port
        const reaching = await build(await gzipTar([{name: 'Dockerfile', content: dockerfile.replace(port, hostPort)}]), '&nocache=true', {}, open)
        assert.match(reaching.text, /^\[main\] OK$/m, reaching.text)
      } finally {
        await open.server.stop()
      }
    })

    it('fails a build that runs past --build-timeout, saying which limit it hit', async () => {
      const slow = await startBuildServer(['--build-timeout', '3s'])
      try {
        const started = Date.now()
        const {text} = await build(await gzipTar([{name: 'Dockerfile', content: `FROM ${BASE_IMAGE}\nRUN sleep 120\n`}]), '&nocache=true', {}, slow)
        assert.match(text, /the build took longer than 3 s, the server's limit \(server start --build-timeout\)/)
        assert.ok(Date.now() - started < 60_000)
        const statuses = (await slow.api.call('GET', '/v7/release?$select=status', {token: slow.token})).json().d
        assert.deepEqual(statuses, [{status: 'failed'}])
      } finally {
        await slow.server.stop()
      }
    })
  })
})
