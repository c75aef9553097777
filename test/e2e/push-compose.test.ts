import {strict as assert} from 'node:assert'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {type CliResult, makeCliHome, runCli} from '../helpers/cli.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {startServer, type TestServer} from '../helpers/server.js'
import {TerminalSession} from '../helpers/terminal.js'

interface ServiceComposition {
  environment?: Record<string, string>
  labels?: Record<string, string>
  env_file?: unknown
}

describe('flotilla push of a compose project with ${VAR}, .env, env_file and a per-service .dockerignore', function () {
  this.timeout(240_000)
  let server: TestServer
  let home: string
  let folder: string
  const sessions: TerminalSession[] = []

  const cli = (args: string[], env: Record<string, string> = {}): Promise<CliResult> =>
    runCli(args, {env: {HOME: home, FLOTILLA_URL: server.url, ...env}, timeoutMs: 180_000})

  async function latestComposition(): Promise<{id: number; services: Record<string, ServiceComposition>}> {
    const [release] = JSON.parse((await cli(['release', 'list', 'compose-env', '--json'])).stdout) as Array<{id: number; status: string}>
    assert.equal(release.status, 'success')
    const shown = await cli(['release', String(release.id), '--composition', '--json'])
    assert.equal(shown.exitCode, 0, shown.stderr)
    return {id: release.id, services: JSON.parse(shown.stdout).composition.services}
  }

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    server = await startServer()
    home = makeCliHome()
    await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env: {HOME: home, FLOTILLA_URL: server.url}, input: server.admin.password})
    assert.equal((await cli(['fleet', 'create', 'compose-env', '--type', 'intel-nuc'])).exitCode, 0)
    folder = mkdtempSync(path.join(tmpdir(), 'flotilla-push-compose-'))
    const files: Record<string, string> = {
      '.env': 'TAG=from-dotenv\nGREETING="hello from .env"\n',
      'common.env': '# shared settings\nLEVEL=info\nDB_URL=postgres://db/${TAG}\n',
      'docker-compose.yml': [
        'services:',
        '  api:',
        '    build: ./${API_DIR:-api}',
        '    env_file: common.env',
        '    environment:',
        '      TAG: ${TAG}',
        '      GREETING: ${GREETING}',
        '      PRICE: "$$5"',
        '      LEVEL: debug',
        '    labels:',
        '      io.flotilla.test.unset: "${NOT_SET_ANYWHERE}"',
        '',
      ].join('\n'),
      // The root's rules would drop api/keep.txt; api's own .dockerignore governs api/, as when Docker builds it.
      '.dockerignore': 'api/keep.txt\n',
      'api/.dockerignore': 'node_modules\n',
      'api/keep.txt': 'kept\n',
      'api/node_modules/big.bin': 'x'.repeat(2 * 1024 * 1024),
      'api/Dockerfile': `FROM ${BASE_IMAGE}\nCOPY . /src\nRUN test -e /src/keep.txt && test ! -e /src/node_modules && echo "context as expected"\n`,
    }
    for (const [name, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(folder, name)), {recursive: true})
      writeFileSync(path.join(folder, name), content)
    }
  })

  after(async () => {
    for (const session of sessions) session.kill()
    await server?.stop()
    if (folder) rmSync(folder, {recursive: true, force: true})
  })

  it('on a terminal: shows the upload progress and the unset-variable warning, and the release carries the resolved values', async () => {
    const push = new TerminalSession(['push', 'compose-env', '--source', folder], {HOME: home, FLOTILLA_URL: server.url, TAG: 'from-shell'})
    sessions.push(push)
    assert.equal(await push.exited, 0, push.output)
    assert.match(push.output, /uploading \d+% of \d+(\.\d)? [kKMG]?B, \d+(\.\d)? [kKMG]?B sent \(\d+(\.\d)? [kKMG]?B\/s\)/)
    assert.match(push.output, /warning: The "NOT_SET_ANYWHERE" variable is not set\. Defaulting to a blank string\./)
    assert.match(push.output, /context as expected/)
    const {services} = await latestComposition()
    assert.deepEqual(services.api.environment, {
      LEVEL: 'debug',
      DB_URL: 'postgres://db/from-shell',
      TAG: 'from-shell',
      GREETING: 'hello from .env',
      PRICE: '$5',
    })
    assert.equal(services.api.labels?.['io.flotilla.test.unset'], '')
    assert.equal(services.api.env_file, undefined)
  })

  it('without a terminal: no progress line, and the values of this shell', async () => {
    const result = await cli(['push', 'compose-env', '--source', folder], {TAG: 'second'})
    assert.equal(result.exitCode, 0, result.stderr)
    assert.doesNotMatch(result.stderr, /uploading/)
    const {services} = await latestComposition()
    assert.equal(services.api.environment?.TAG, 'second')
    assert.equal(services.api.environment?.DB_URL, 'postgres://db/second')
  })

  it('refuses a compose key devices do not apply before uploading, naming the service and the key', async () => {
    writeFileSync(path.join(folder, 'docker-compose.yml'), 'services:\n  api:\n    build: api\n    privileged: false\n    links: [db]\n')
    const result = await cli(['push', 'compose-env', '--source', folder])
    assert.equal(result.exitCode, 1)
    assert.match(result.stderr, /error: docker-compose\.yml: service "api" uses "links", which devices do not apply — remove it/)
    assert.doesNotMatch(result.stderr, /uploading|at .*\.js:\d+/)
  })

  it('refuses a required variable that is not set before uploading, naming it', async () => {
    writeFileSync(path.join(folder, 'docker-compose.yml'), 'services:\n  api:\n    build: api\n    image: "${IMAGE:?set IMAGE}"\n')
    const result = await cli(['push', 'compose-env', '--source', folder])
    assert.equal(result.exitCode, 1)
    assert.match(result.stderr, /error: docker-compose\.yml: services\.api\.image: required variable IMAGE is not set: set IMAGE/)
  })
})
