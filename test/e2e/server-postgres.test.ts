import {strict as assert} from 'node:assert'
import {mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {runCli} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {freeLoopbackPort} from '../helpers/net.js'
import {type TestPostgres, testPostgres} from '../helpers/postgres.js'
import {startServer, type TestServer} from '../helpers/server.js'

/** `server start` and the admin commands on PostgreSQL, whichever database the rest of the suite runs on. */
describe('flotilla server on PostgreSQL (--database, FLOTILLA_DATABASE_URL)', () => {
  let cluster: TestPostgres
  let dataDir: string
  let server: TestServer | undefined

  before(async () => {
    cluster = await testPostgres()
  })

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-server-pg-'))
  })

  afterEach(async () => {
    await server?.stop()
    server = undefined
    rmSync(dataDir, {recursive: true, force: true})
  })

  it('serves from the database of --database, where server user add and password write too, leaving no SQLite file', async () => {
    const url = await cluster.createDatabase({empty: true})
    server = await startServer({dataDir, args: ['--database', url]})
    const added = await runCli(['server', 'user', 'add', '--email', 'ada@example.com', '--username', 'ada', '--password-stdin', '--data-dir', dataDir], {input: 'ada-password-1', env: {FLOTILLA_DATABASE_URL: url}})
    assert.equal(added.exitCode, 0, added.stderr)
    const api = new FleetApi(server.url)
    await api.login('ada', 'ada-password-1')
    const changed = await runCli(['server', 'user', 'password', '--username', 'ada', '--password-stdin', '--database', url], {input: 'ada-password-2'})
    assert.equal(changed.exitCode, 0, changed.stderr)
    assert.match(changed.stderr, /a password in --database can be read by other users .* set FLOTILLA_DATABASE_URL or PGPASSWORD instead/)
    await api.login('ada', 'ada-password-2')
    assert.ok(!readdirSync(dataDir).some((name) => name.startsWith('flotilla.db')), `${readdirSync(dataDir).join(', ')}`)
    await server.stop({keepDataDir: true})
    server = await startServer({dataDir, env: {FLOTILLA_DATABASE_URL: url}})
    await new FleetApi(server.url).login('ada', 'ada-password-2')
  })

  it('takes --database over FLOTILLA_DATABASE_URL', async () => {
    const url = await cluster.createDatabase()
    server = await startServer({dataDir, args: ['--database', url], env: {FLOTILLA_DATABASE_URL: 'postgres://nobody@127.0.0.1:1/nowhere'}})
    await new FleetApi(server.url).login(server.admin.username, server.admin.password)
  })

  it('refuses a malformed URL, an unreachable server, a wrong password and a missing database, each in one line without the password', async () => {
    const secret = 'Secret-Password-42'
    const closedPort = await freeLoopbackPort()
    const database = new URL(cluster.baseUrl)
    const cases: Array<{env?: Record<string, string>; database?: string; exitCode: number; error: RegExp}> = [
      {database: 'not a url', exitCode: 2, error: /^error: --database is not a URL — give a PostgreSQL one such as postgres:\/\/\S+$/},
      {env: {FLOTILLA_DATABASE_URL: `mysql://root:${secret}@127.0.0.1/flotilla`}, exitCode: 2, error: /^error: FLOTILLA_DATABASE_URL must be a PostgreSQL URL \(postgres:\/\/…\), not a mysql: one/},
      {env: {FLOTILLA_DATABASE_URL: `postgres://flotilla:${secret}@127.0.0.1:${closedPort}/flotilla`}, exitCode: 1, error: new RegExp(`^error: cannot connect to PostgreSQL at 127\\.0\\.0\\.1:${closedPort}: connection refused — is it running and listening there\\?$`)},
      {env: {FLOTILLA_DATABASE_URL: `postgres://flotilla:${secret}@127.0.0.1:${cluster.port}/postgres`}, exitCode: 1, error: new RegExp(`^error: PostgreSQL at 127\\.0\\.0\\.1:${cluster.port} refused the login: wrong user name or password`)},
      {env: {FLOTILLA_DATABASE_URL: `postgres://${database.username}:${database.password}@127.0.0.1:${cluster.port}/no_such_db`}, exitCode: 1, error: /^error: PostgreSQL at 127\.0\.0\.1:\d+ has no database "no_such_db" — create it/},
    ]
    for (const {env, database: flag, exitCode, error} of cases) {
      for (const command of [['server', 'start', '--port', '0', '--ssh-port', '0', '--no-registry'], ['server', 'user', 'add', '--email', 'x@example.com', '--username', 'x']]) {
        const result = await runCli([...command, '--data-dir', dataDir, ...(flag ? ['--database', flag] : [])], {env})
        const what = `${command.slice(0, 3).join(' ')} with ${flag ?? env?.FLOTILLA_DATABASE_URL}`
        assert.equal(result.exitCode, exitCode, `${what}: ${result.stderr}`)
        assert.equal(result.stdout, '', what)
        assert.match(result.stderr.trim(), error, what)
        assert.equal(result.stderr.trim().split('\n').length, 1, `${what}: ${result.stderr}`)
        assert.ok(!result.stderr.includes(secret) && !result.stderr.includes(database.password), `${what} shows the password: ${result.stderr}`)
      }
    }
  })
})
