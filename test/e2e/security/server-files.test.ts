import {strict as assert} from 'node:assert'
import {chmodSync, existsSync, readdirSync, statSync} from 'node:fs'
import path from 'node:path'

import {runCli} from '../../helpers/cli.js'
import {FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

/**
 * What the server keeps and hands out, under attack (issue 11, lower items): its data dir (database with password
 * hashes and session secrets, signing secret, SSH host key) is readable by its user only, and the endpoints it
 * writes into the well-known document and config.json come from its public URL, never from a request's Host.
 */
describe('security: server files and public URL', function () {
  this.timeout(120_000)
  const servers: TestServer[] = []

  const started = async (options: Parameters<typeof startServer>[0] = {}) => {
    const server = await startServer(options)
    servers.push(server)
    return server
  }

  const modesOf = (dataDir: string): Record<string, number> =>
    Object.fromEntries(['.', ...readdirSync(dataDir)].map((name) => [name, statSync(path.join(dataDir, name)).mode & 0o777]))

  afterEach(async () => {
    for (const server of servers.splice(0)) await server.stop()
  })

  it('keeps its data dir 0700 and every file in it 0600, tightening what an older start left open', async () => {
    const server = await started()
    const api = new FleetApi(server.url)
    await api.login(server.admin.username, server.admin.password)
    const modes = modesOf(server.dataDir)
    assert.ok('flotilla.db' in modes, JSON.stringify(modes))
    for (const [name, mode] of Object.entries(modes)) assert.equal(mode, name === '.' ? 0o700 : 0o600, `${name} is ${mode.toString(8)}`)

    await server.crash()
    chmodSync(server.dataDir, 0o755)
    for (const name of readdirSync(server.dataDir)) chmodSync(path.join(server.dataDir, name), 0o644)
    const restarted = await started({dataDir: server.dataDir})
    await new FleetApi(restarted.url).login(server.admin.username, server.admin.password)
    for (const [name, mode] of Object.entries(modesOf(restarted.dataDir))) assert.equal(mode, name === '.' ? 0o700 : 0o600, `${name} is ${mode.toString(8)} after a restart`)
  })

  it("writes its own URL into the well-known document and config.json, whatever Host a client sends", async () => {
    const server = await started()
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'hosted')
    const forged = {host: 'attacker.example:6666', 'x-forwarded-host': 'attacker.example'}
    const wellKnown = (await api.call('GET', '/.well-known/flotilla.json', {headers: forged})).json()
    assert.deepEqual([wellKnown.api, wellKnown.builder, wellKnown.tunnel, wellKnown.ssh.host], [server.url, server.url, server.url, '127.0.0.1'])
    const config = (await api.call('GET', `/download-config?appId=${fleet.id}&version=v1`, {token, headers: forged})).json()
    assert.deepEqual([config.apiEndpoint, config.deltaEndpoint, config.vpnEndpoint, config.flotillaEndpoints.api], [server.url, server.url, '127.0.0.1', server.url])
    assert.ok(!JSON.stringify(config).includes('attacker'))
  })

  it('hands out --public-url when given one, and refuses one that is not an http(s) origin', async () => {
    const server = await started({args: ['--public-url', 'https://fleet.example.com:8443/']})
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'public')
    const wellKnown = (await api.call('GET', '/.well-known/flotilla.json')).json()
    assert.deepEqual([wellKnown.api, wellKnown.ssh.host, wellKnown.ssh.port], ['https://fleet.example.com:8443', 'fleet.example.com', server.sshPort])
    const config = (await api.call('GET', `/download-config?appId=${fleet.id}&version=v1`, {token})).json()
    assert.deepEqual([config.apiEndpoint, config.vpnEndpoint], ['https://fleet.example.com:8443', 'fleet.example.com'])

    for (const bad of ['fleet.example.com', 'ftp://fleet.example.com', 'https://fleet.example.com/api']) {
      const untouched = path.join(server.dataDir, 'never-made')
      const refused = await runCli(['server', 'start', '--port', '0', '--ssh-port', '0', '--data-dir', untouched, '--public-url', bad])
      assert.equal(refused.exitCode, 1, refused.stdout + refused.stderr)
      assert.match(refused.stderr, /^error: public URL ".*" (is not a URL|must be http\(s\):\/\/<host>\[:<port>\] with no path)/)
      assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr)
      assert.ok(!existsSync(untouched))
    }
  })
})
