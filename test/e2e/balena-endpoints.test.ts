import {strict as assert} from 'node:assert'
import {chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {createServer, request as httpRequest, type IncomingMessage, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {type CliResult, makeCliHome, runCli} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const UUID = 'ba1e0a00ba1e0a00ba1e0a00ba1e0a00'

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/**
 * A balena-style API on loopback: the balena requests answered by a real flotilla server behind it, but no
 * /.well-known/flotilla.json (balena's API has none), its devices online (as a VPN-connected device is), and a
 * builder of its own at /v3/build that records what it gets and fails the build, as a balena builder may.
 */
async function startBalenaStandIn(upstream: string): Promise<{url: string; builds: Array<{url: string; authorization?: string}>; server: Server}> {
  const builds: Array<{url: string; authorization?: string}> = []
  const server = createServer(async (request, response) => {
    const body = await readBody(request)
    if (request.url === '/.well-known/flotilla.json') {
      response.writeHead(404, {'content-type': 'text/plain'}).end('Not Found')
      return
    }

    // balena's builder has no contents query (`/v3/build/contents` is flotilla's): the push must send everything.
    if (request.url?.startsWith('/v3/build/')) {
      response.writeHead(404, {'content-type': 'text/plain'}).end('Not Found')
      return
    }

    if (request.url?.startsWith('/v3/build?')) {
      builds.push({url: request.url, authorization: request.headers.authorization})
      response.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify([{message: '[Error] the stand-in builder builds nothing', isError: true}]))
      return
    }

    const forwarded = httpRequest(new URL(request.url!, upstream), {method: request.method, headers: {...request.headers, host: new URL(upstream).host, 'accept-encoding': 'identity'}})
    forwarded.on('response', async (answer) => {
      let text = (await readBody(answer)).toString('utf8')
      if (request.url!.startsWith('/v7/device')) text = text.replaceAll('"is_online":false', '"is_online":true')
      const headers = {...answer.headers}
      delete headers['content-length']
      response.writeHead(answer.statusCode ?? 502, headers).end(text)
    })
    forwarded.on('error', () => response.writeHead(502).end())
    forwarded.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, builds, server}
}

describe('commands that need a flotilla endpoint, against a balena-style server', function () {
  this.timeout(90_000)
  let flotilla: TestServer
  let standIn: Awaited<ReturnType<typeof startBalenaStandIn>>
  let scratch: string
  let env: NodeJS.ProcessEnv

  before(async () => {
    flotilla = await startServer()
    const api = new FleetApi(flotilla.url)
    const token = await api.login(flotilla.admin.email, flotilla.admin.password)
    const fleet = await api.createFleet(token, 'remote')
    await api.registerDevice(token, fleet.id, UUID)
    standIn = await startBalenaStandIn(flotilla.url)
    scratch = mkdtempSync(path.join(tmpdir(), 'flotilla-balena-'))
    writeFileSync(path.join(scratch, 'Dockerfile'), 'FROM busybox\nCMD ["true"]\n')
    env = {HOME: makeCliHome(), FLOTILLA_URL: standIn.url, FLOTILLA_TOKEN: token}
  })

  after(async () => {
    await new Promise((resolve) => standIn?.server.close(resolve))
    await flotilla?.stop()
    if (scratch) rmSync(scratch, {recursive: true, force: true})
  })

  function assertOneLine(result: CliResult, pattern: RegExp): void {
    assert.equal(result.exitCode, 1, `${result.stdout}\n${result.stderr}`)
    const errors = result.stderr.split('\n').filter((line) => line.startsWith('error:'))
    assert.equal(errors.length, 1, result.stderr)
    assert.match(errors[0], pattern)
    // A status, not a digit run: the stand-in's random port may hold "404" (127.0.0.1:40495).
    assert.doesNotMatch(result.stderr, /(?<![\d:])404(?!\d)/)
  }

  it('names the setting that points at the builder, the tunnel proxy and the SSH gateway, instead of a bare 404', async () => {
    const hint = /is not a flotilla server: it has no \/\.well-known\/flotilla\.json\) — set /
    assertOneLine(await runCli(['push', 'remote', '--source', scratch], {env}), new RegExp(`builder.*${hint.source}FLOTILLA_BUILDER_URL`))
    assertOneLine(await runCli(['tunnel', UUID, '-p', '22222:0'], {env}), new RegExp(`tunnel proxy.*${hint.source}FLOTILLA_TUNNEL_URL`))
    assertOneLine(await runCli(['ssh', UUID], {env}), new RegExp(`SSH gateway.*${hint.source}FLOTILLA_SSH_HOST`))
    assert.equal(standIn.builds.length, 0)
  })

  it('pushes to the builder FLOTILLA_BUILDER_URL names, with the user token and the fleet slug', async () => {
    const result = await runCli(['push', 'remote', '--source', scratch], {env: {...env, FLOTILLA_BUILDER_URL: standIn.url}})
    assert.equal(result.exitCode, 1, result.stderr)
    assert.match(result.stdout + result.stderr, /the stand-in builder builds nothing/)
    assert.equal(standIn.builds.length, 1)
    assert.match(standIn.builds[0].url, /^\/v3\/build\?slug=admin%2Fremote&/)
    assert.equal(standIn.builds[0].authorization, `Bearer ${env.FLOTILLA_TOKEN}`)
  })

  it('runs ssh against the gateway FLOTILLA_SSH_HOST names', async () => {
    const argsFile = path.join(scratch, 'ssh-args')
    const fakeSsh = path.join(scratch, 'fake-ssh')
    writeFileSync(fakeSsh, `#!/bin/sh\nprintf '%s\\n' "$@" > '${argsFile}'\n`)
    chmodSync(fakeSsh, 0o755)
    const result = await runCli(['ssh', UUID], {env: {...env, FLOTILLA_SSH_HOST: '127.0.0.1:2299', FLOTILLA_SSH_BINARY: fakeSsh}})
    assert.equal(result.exitCode, 0, result.stderr)
    const args = readFileSync(argsFile, 'utf8').trim().split('\n')
    assert.equal(args[args.indexOf('-p') + 1], '2299')
    assert.ok(args.includes('admin@127.0.0.1'), args.join(' '))
    assert.equal(args.at(-1), `host ${UUID}`)
  })
})
