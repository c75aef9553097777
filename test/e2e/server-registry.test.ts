import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {runCli} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const processAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** `server start` and the Docker registry it runs by default: announced, kept across restarts, or turned off. */
describe('server start with its own Docker registry', function () {
  this.timeout(120_000)
  const servers: TestServer[] = []

  async function registryOf(server: TestServer): Promise<string | null> {
    return (await new FleetApi(server.url).call('GET', '/.well-known/flotilla.json')).json().registry
  }

  after(async () => {
    for (const server of servers) await server.stop()
  })

  it('runs a token-auth registry on a loopback port, announces it, and keeps its address when started again after a crash', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-server-'))
    const first = await startServer({dataDir, managedRegistry: true})
    const registry = await registryOf(first)
    assert.match(registry ?? '', /^127\.0\.0\.1:\d+$/)
    const answer = await fetch(`http://${registry}/v2/`)
    assert.equal(answer.status, 401)
    assert.equal(answer.headers.get('www-authenticate'), `Bearer realm="${first.url}/auth/v1/token",service="${registry}"`)
    const orphan = Number(readFileSync(path.join(dataDir, 'registry', 'pid'), 'utf8'))
    await first.crash()
    assert.ok(processAlive(orphan), 'a killed server leaves its registry running')

    const second = await startServer({dataDir, managedRegistry: true})
    servers.push(second)
    assert.equal(await registryOf(second), registry, 'image names carry the address, so it stays')
    assert.equal(processAlive(orphan), false, 'the registry left by the killed server is stopped')
    assert.equal((await fetch(`http://${registry}/v2/`)).headers.get('www-authenticate'), `Bearer realm="${second.url}/auth/v1/token",service="${registry}"`)
  })

  it('runs without a registry with --no-registry, and the token endpoint says so', async () => {
    const server = await startServer({args: ['--no-registry']})
    servers.push(server)
    assert.equal(await registryOf(server), null)
    const answer = await new FleetApi(server.url).call('GET', '/auth/v1/token?service=x&scope=repository:v2/abc:pull')
    assert.equal(answer.status, 404)
    assert.match(answer.json(), /no Docker registry/)
  })

  it('refuses --registry with --no-registry', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-server-'))
    const result = await runCli(['server', 'start', '--port', '0', '--ssh-port', '0', '--data-dir', dataDir, '--registry', '127.0.0.1:5000', '--no-registry'])
    rmSync(dataDir, {recursive: true, force: true})
    assert.equal(result.exitCode, 2, result.stderr)
    assert.match(result.stderr, /--registry and --no-registry contradict each other/)
  })
})
