import {strict as assert} from 'node:assert'

import {makeCliHome, runCli} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'
import {TerminalSession} from '../helpers/terminal.js'

describe('the CLI on a terminal: prompts and confirmations', function () {
  this.timeout(90_000)
  let server: TestServer
  let home: string
  const sessions: TerminalSession[] = []

  function onTerminal(args: string[]): TerminalSession {
    const session = new TerminalSession(args, {HOME: home, FLOTILLA_URL: server.url})
    sessions.push(session)
    return session
  }

  before(async () => {
    server = await startServer()
    home = makeCliHome()
  })

  after(async () => {
    for (const session of sessions) session.kill()
    await server?.stop()
  })

  it('asks how to log in, then for the email and a masked password', async () => {
    const login = onTerminal(['login'])
    await login.waitFor(/How do you want to log in\?/)
    login.type('\r')
    await login.waitFor(/Email or username:/)
    login.type(`${server.admin.email}\r`)
    await login.waitFor(/Password:/)
    login.type(`${server.admin.password}\r`)
    assert.equal(await login.exited, 0, login.output)
    assert.match(login.output, /logged in to http:\/\/127\.0\.0\.1:\d+ as admin/)
    assert.ok(!login.output.includes(server.admin.password), 'the password is never echoed')
    const whoami = await runCli(['whoami', '--json'], {env: {HOME: home, FLOTILLA_URL: server.url}})
    assert.equal(JSON.parse(whoami.stdout).username, 'admin')
  })

  it('asks before removing a fleet, keeps it on "no" and removes it on "yes"', async () => {
    const env = {HOME: home, FLOTILLA_URL: server.url}
    assert.equal((await runCli(['fleet', 'create', 'precious', '--type', 'intel-nuc'], {env})).exitCode, 0)
    const declined = onTerminal(['fleet', 'rm', 'precious'])
    await declined.waitFor(/Remove fleet admin\/precious and its 0 devices\?/)
    declined.type('n\r')
    assert.equal(await declined.exited, 0, declined.output)
    assert.equal((await runCli(['fleet', 'precious'], {env})).exitCode, 0)
    const accepted = onTerminal(['fleet', 'rm', 'precious'])
    await accepted.waitFor(/Remove fleet admin\/precious/)
    accepted.type('y\r')
    assert.equal(await accepted.exited, 0, accepted.output)
    assert.match(accepted.output, /removed fleet admin\/precious/)
    assert.equal((await runCli(['fleet', 'precious'], {env})).exitCode, 1)
  })

  it('fits a device table to the terminal: colour padded by what shows, long names cut, colliding UUIDs told apart', async () => {
    const env = {HOME: makeCliHome(), FLOTILLA_URL: server.url}
    const login = await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env, input: server.admin.password})
    assert.equal(login.exitCode, 0, login.stderr)
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'wide')
    const uuids = ['abcdef1' + '0'.repeat(25), 'abcdef1' + '1'.repeat(25)]
    for (const uuid of uuids) await api.registerDevice(token, fleet.id, uuid)
    const longName = 'a-device-whose-name-goes-on-and-on-'.repeat(3)
    assert.equal((await runCli(['device', 'rename', uuids[0], longName], {env})).exitCode, 0)

    const session = new TerminalSession(['device', 'list', '--fleet', 'wide'], env, {columns: 80})
    sessions.push(session)
    assert.equal(await session.exited, 0, session.output)
    const lines = session.output.replaceAll(/\u001B\[[\d;]*m/g, '').split(/\r?\n/).filter((line) => line.trim() !== '')
    assert.match(session.output, /\u001B\[/, 'coloured on a terminal')
    assert.match(lines[0], /^UUID {6}NAME .*ONLINE {3}RELEASE$/, lines.join('\n'))
    for (const line of lines) assert.ok(line.length <= 80, `wider than the terminal: ${JSON.stringify(line)}`)
    assert.match(lines.join('\n'), /^abcdef10 +a-device-whose\S*… +raspberrypi4-64 +admin\/wide +offline$/m)
    assert.match(lines.join('\n'), /^abcdef11 /m)
  })
})
