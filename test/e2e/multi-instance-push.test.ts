import {strict as assert} from 'node:assert'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import http from 'node:http'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {makeCliHome, runCli} from '../helpers/cli.js'
import {ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {freeLoopbackPort} from '../helpers/net.js'
import {TEST_DATABASE} from '../helpers/postgres.js'
import {startServer, type TestServer} from '../helpers/server.js'

/** A loopback HTTP forwarder that sends each request to the server `route` picks, as a balancer would. */
async function startForwarder(port: number, route: (request: http.IncomingMessage) => TestServer): Promise<http.Server> {
  const forwarder = http.createServer((request, response) => {
    const target = route(request)
    const upstream = http.request({host: '127.0.0.1', port: target.port, method: request.method, path: request.url, headers: request.headers}, (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(response)
    })
    upstream.once('error', () => response.destroy())
    request.pipe(upstream)
  })
  await new Promise<void>((resolve) => forwarder.listen(port, '127.0.0.1', resolve))
  return forwarder
}

/**
 * Two instances on one PostgreSQL database, each with a data dir (and so a store of pushed contents) of its own,
 * behind a forwarder: the push's contents query reaches the instance that kept the files, the upload the other.
 */
describe('flotilla push through two server instances with data dirs of their own', function () {
  this.timeout(300_000)
  let a: TestServer
  let b: TestServer
  let forwarder: http.Server
  let home: string
  let folder: string
  let key: string
  let route: (request: http.IncomingMessage) => TestServer

  before(async function () {
    if (TEST_DATABASE !== 'postgres') return this.skip()
    await ensureDocker()
    await ensureBaseImage()
    const port = await freeLoopbackPort()
    const publicUrl = ['--public-url', `http://127.0.0.1:${port}`]
    a = await startServer({args: publicUrl})
    b = await startServer({args: publicUrl, databaseUrl: a.databaseUrl})
    route = () => a
    forwarder = await startForwarder(port, (request) => route(request))
    const api = new FleetApi(a.url)
    // An API key, which both instances know: a session token is signed with a secret of each data dir.
    key = (await api.call('POST', '/api-key/user/full', {token: await api.login(a.admin.username, a.admin.password), json: {name: 'push'}})).json()
    await api.createFleet(key, 'balanced', 'generic-amd64')
    home = makeCliHome()
    folder = mkdtempSync(path.join(tmpdir(), 'flotilla-balanced-'))
    writeFileSync(path.join(folder, 'Dockerfile'), 'FROM flotilla-test/busybox:latest\nCOPY . /app\nCMD ["cat", "/app/message.txt"]\n')
    writeFileSync(path.join(folder, 'message.txt'), `kept by one instance ${folder}\n`)
  })

  after(async () => {
    forwarder?.close()
    await b?.stop()
    await a?.stop()
    for (const dir of [home, folder]) if (dir) rmSync(dir, {recursive: true, force: true})
  })

  const push = (...flags: string[]) => runCli(['push', 'balanced', '--source', folder, ...flags], {env: {HOME: home, FLOTILLA_URL: `http://127.0.0.1:${forwarder.address() && (forwarder.address() as {port: number}).port}`, FLOTILLA_TOKEN: key}, timeoutMs: 240_000})

  it('sends again in full, once, the contents the upload\u2019s instance lacks, and the release builds', async () => {
    const first = await push()
    assert.equal(first.exitCode, 0, first.stderr)
    assert.match(first.stderr, /Upload: 2 files \(\d+ B\) sent, 0 files/)
    // Now the contents query reaches A, which kept the files, and the upload B, which never saw them.
    route = (request) => (request.url?.startsWith('/v3/build/contents') ? a : b)
    const second = await push()
    assert.equal(second.exitCode, 0, second.stderr)
    assert.match(second.stderr, /This builder lacks 2 file contents sent by earlier pushes \(another server instance kept them\): sending the project again with them in full/)
    assert.match(second.stderr, /Upload: 2 files \(\d+ B\) sent, 0 files \(0 B\) unchanged since earlier pushes/)
    assert.doesNotMatch(second.stderr, /refers to contents/, 'the refusal that led to the resend is not shown as an error')
    const releaseId = Number(/\(id (\d+)\) built/.exec(second.stderr)?.[1])
    const status = (await new FleetApi(a.url).call('GET', `/v7/release(${releaseId})?$select=status`, {token: key})).json().d[0].status
    assert.equal(status, 'success')
  })

  it('starts a detached build after sending again what the upload’s instance lacks', async () => {
    writeFileSync(path.join(folder, 'message.txt'), `detached ${Date.now()}\n`)
    route = () => a
    assert.equal((await push()).exitCode, 0)
    writeFileSync(path.join(folder, 'extra.txt'), 'only A has seen the message\n')
    route = (request) => (request.url?.startsWith('/v3/build/contents') ? a : b)
    const detached = await push('--detached', '--json')
    assert.equal(detached.exitCode, 0, detached.stderr)
    const {releaseId, started} = JSON.parse(detached.stdout) as {releaseId: number; started: boolean}
    assert.equal(started, true)
    const api = new FleetApi(a.url)
    const status = async () => (await api.call('GET', `/v7/release(${releaseId})?$select=status`, {token: key})).json().d[0].status as string
    await eventually(async () => (await status()) !== 'running', 'the detached build to end', 120_000)
    assert.equal(await status(), 'success')
  })
})
