import {strict as assert} from 'node:assert'
import {rmSync} from 'node:fs'

import {makeCliHome, runCli} from '../../helpers/cli.js'
import {FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

/**
 * Sessions and logins under attack (issue 11, item 6 and the lower items): logout ends every session token of the
 * user on the server, refresh refuses them; a login takes as long whether or not the user exists; secrets given in
 * argv are warned about. Two users in two organizations; each test uses its own user where it changes sessions.
 */
describe('security: sessions and logins', function () {
  this.timeout(120_000)
  let server: TestServer
  let api: FleetApi
  const homes: string[] = []

  const cliHome = () => {
    const home = makeCliHome()
    homes.push(home)
    return home
  }

  const status = async (path: string, token: string) => (await api.call('GET', path, {token})).status

  before(async () => {
    server = await startServer()
    api = new FleetApi(server.url)
    for (const name of ['carol', 'dave', 'erin', 'frank', 'mallory']) await server.addUser({email: `${name}@example.com`, username: name, password: `${name}-password-1`})
  })

  after(async () => {
    await server?.stop()
    for (const home of homes) rmSync(home, {recursive: true, force: true})
  })

  it("ends every session token of the user on logout, refreshed ones too, and nobody else's", async () => {
    const home = cliHome()
    const login = await runCli(['login', '--url', server.url, '--credentials', '--email', 'carol', '--password', '-'], {input: 'carol-password-1', env: {HOME: home}})
    assert.equal(login.exitCode, 0, login.stderr)
    const other = await api.login('carol', 'carol-password-1')
    const refreshed = (await api.call('GET', '/user/v1/refresh-token', {token: other})).body
    const apiKey = (await api.call('POST', '/api-key/user/full', {token: other, json: {name: 'ci'}})).json()
    const mallory = await api.login('mallory', 'mallory-password-1')

    const logout = await runCli(['logout'], {env: {HOME: home}})
    assert.equal(logout.exitCode, 0, logout.stderr)
    assert.doesNotMatch(logout.stderr, /warning/)
    for (const token of [other, refreshed]) {
      assert.equal(await status('/user/v1/whoami', token), 401)
      assert.equal(await status('/user/v1/refresh-token', token), 401)
      assert.equal(await status('/v7/application', token), 401)
    }

    assert.equal(await status('/user/v1/whoami', apiKey), 200, 'API keys are revoked on their own, not by logout')
    assert.equal(await status('/user/v1/whoami', mallory), 200)
    const again = await api.login('carol', 'carol-password-1')
    assert.equal(await status('/user/v1/whoami', again), 200)
  })

  it('refuses to log out an API key or a token already ended, and changes nothing', async () => {
    const session = await api.login('dave', 'dave-password-1')
    const apiKey = (await api.call('POST', '/api-key/user/full', {token: session, json: {name: 'ci'}})).json()
    const byKey = await api.call('POST', '/user/v1/logout', {token: apiKey})
    assert.equal(byKey.status, 400)
    assert.match(byKey.json(), /api-key revoke/)
    assert.equal(await status('/user/v1/whoami', session), 200)
    assert.equal((await api.call('POST', '/user/v1/logout')).status, 401)
    assert.equal((await api.call('POST', '/user/v1/logout', {token: session})).status, 200)
    assert.equal((await api.call('POST', '/user/v1/logout', {token: session})).status, 401)
    assert.equal(await status('/user/v1/whoami', apiKey), 200)
  })

  it('ends every session of a user whose password an admin sets, and refuses an unknown user without writing', async () => {
    const session = await api.login('frank', 'frank-password-1')
    const refreshed = (await api.call('GET', '/user/v1/refresh-token', {token: session})).body
    const mallory = await api.login('mallory', 'mallory-password-1')
    const set = await runCli(['server', 'user', 'password', '--username', 'frank', '--password-stdin', '--data-dir', server.dataDir], {input: 'frank-new-password\n', env: server.databaseEnv})
    assert.equal(set.exitCode, 0, set.stderr)
    for (const token of [session, refreshed]) {
      assert.equal(await status('/user/v1/whoami', token), 401)
      assert.equal(await status('/user/v1/refresh-token', token), 401)
    }

    assert.equal((await api.call('POST', '/login_', {json: {username: 'frank', password: 'frank-password-1'}})).status, 401)
    assert.equal(await status('/user/v1/whoami', await api.login('frank', 'frank-new-password')), 200)
    assert.equal(await status('/user/v1/whoami', mallory), 200)

    const unknown = await runCli(['server', 'user', 'password', '--username', 'nobody', '--password-stdin', '--data-dir', server.dataDir], {input: 'whatever-password', env: server.databaseEnv})
    assert.equal(unknown.exitCode, 1)
    assert.match(unknown.stderr, /^error: user "nobody" not found/)
    const short = await runCli(['server', 'user', 'password', '--username', 'mallory', '--password-stdin', '--data-dir', server.dataDir], {input: 'short', env: server.databaseEnv})
    assert.equal(short.exitCode, 1)
    assert.match(short.stderr, /at least 8 characters/)
    assert.equal(await status('/user/v1/whoami', mallory), 200)
  })

  it('takes as long to refuse an unknown user as a wrong password of a real one (a bounded sample)', async () => {
    // A password check is one scrypt (tens of ms); without the dummy check an unknown user is refused in a few ms.
    const timed = async (username: string) => {
      const started = process.hrtime.bigint()
      const answer = await api.call('POST', '/login_', {json: {username, password: 'not-the-password'}})
      assert.equal(answer.status, 401)
      return Number(process.hrtime.bigint() - started) / 1e6
    }

    const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]
    const known: number[] = []
    const unknown: number[] = []
    await timed('nobody-warmup')
    for (let round = 0; round < 5; round++) {
      known.push(await timed('erin'))
      unknown.push(await timed(`nobody-${round}`))
    }

    assert.ok(median(unknown) > median(known) / 2, `unknown users refused in ${median(unknown).toFixed(1)} ms, wrong passwords in ${median(known).toFixed(1)} ms`)
  })

  it('warns that a password or token in argv is visible to other users, and reads them from stdin without a warning', async () => {
    const home = cliHome()
    const inArgv = await runCli(['login', '--url', server.url, '--credentials', '--email', 'erin', '--password', 'erin-password-1'], {env: {HOME: home}})
    assert.equal(inArgv.exitCode, 0, inArgv.stderr)
    assert.match(inArgv.stderr, /^warning: --password on the command line can be read by other users of this machine \(ps, \/proc\).* use --password - /m)
    const token = await api.login('erin', 'erin-password-1')
    const tokenInArgv = await runCli(['login', '--url', server.url, '--token', token], {env: {HOME: home}})
    assert.equal(tokenInArgv.exitCode, 0, tokenInArgv.stderr)
    assert.match(tokenInArgv.stderr, /warning: --token on the command line can be read by other users/)
    const fromStdin = await runCli(['login', '--url', server.url, '--token', '-'], {input: token, env: {HOME: home}})
    assert.equal(fromStdin.exitCode, 0, fromStdin.stderr)
    assert.doesNotMatch(fromStdin.stderr, /warning/)
  })
})
