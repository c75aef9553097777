import {strict as assert} from 'node:assert'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {createGunzip} from 'node:zlib'

import {extract} from 'tar-stream'

import {makeCliHome, runCli} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

/** A builder on loopback that keeps what each push uploads (files by name) and fails the build. */
function capturingBuilder(): {server: Server; uploads: Array<Map<string, string>>} {
  const uploads: Array<Map<string, string>> = []
  const server = createServer(async (request, response) => {
    if (!request.url?.startsWith('/v3/build?')) {
      response.writeHead(404).end()
      return
    }

    const files = new Map<string, string>()
    const reader = extract()
    request.pipe(createGunzip()).pipe(reader)
    for await (const entry of reader) {
      const chunks: Buffer[] = []
      for await (const chunk of entry) chunks.push(chunk as Buffer)
      files.set(entry.header.name, Buffer.concat(chunks).toString('utf8'))
    }

    uploads.push(files)
    response.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify([{type: 'metadata', resource: 'buildLogId', value: 1}, {message: '[Error] captured', isError: true}]))
  })
  return {server, uploads}
}

describe('flotilla push --registry-secrets', function () {
  this.timeout(120_000)
  let server: TestServer
  let builder: ReturnType<typeof capturingBuilder>
  let env: Record<string, string>
  let folder: string

  before(async () => {
    server = await startServer()
    const api = new FleetApi(server.url)
    await api.createFleet(await api.login(server.admin.username, server.admin.password), 'secrets', 'generic-amd64')
    builder = capturingBuilder()
    await new Promise<void>((resolve) => builder.server.listen(0, '127.0.0.1', resolve))
    env = {HOME: makeCliHome(), FLOTILLA_URL: server.url, FLOTILLA_BUILDER_URL: `http://127.0.0.1:${(builder.server.address() as AddressInfo).port}`}
    await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env, input: server.admin.password})
    folder = mkdtempSync(path.join(tmpdir(), 'flotilla-secrets-'))
    writeFileSync(path.join(folder, 'docker-compose.yml'), 'services:\n  cache:\n    image: registry.example:5000/team/cache:1\n')
  })

  after(async () => {
    builder?.server.close()
    await server?.stop()
    if (folder) rmSync(folder, {recursive: true, force: true})
  })

  it("sends the file's credentials to the builder as .balena/registry-secrets.json, YAML read as balena-cli reads it", async () => {
    const secrets = path.join(folder, '..', `secrets-${path.basename(folder)}.yml`)
    writeFileSync(secrets, "'registry.example:5000':\n  username: ann\n  password: hunter2\n'':\n  username: hub\n  password: h\n")
    try {
      const result = await runCli(['push', 'secrets', '--source', folder, '--registry-secrets', secrets], {env})
      assert.match(result.stderr, /captured/)
      const upload = builder.uploads.at(-1)
      assert.ok(upload)
      assert.deepEqual(JSON.parse(upload.get('.balena/registry-secrets.json') ?? 'null'), {'registry.example:5000': {username: 'ann', password: 'hunter2'}, '': {username: 'hub', password: 'h'}})
    } finally {
      rmSync(secrets, {force: true})
    }
  })

  it('refuses a malformed or missing secrets file in one line naming it, uploading nothing', async () => {
    const uploads = builder.uploads.length
    const malformed = path.join(folder, '..', `bad-${path.basename(folder)}.json`)
    writeFileSync(malformed, '{"registry.example:5000": {"username": "ann"}}')
    try {
      const bad = await runCli(['push', 'secrets', '--source', folder, '--registry-secrets', malformed], {env})
      assert.equal(bad.exitCode, 1)
      assert.match(bad.stderr.trim(), /^error: .*bad-.*\.json: the entry of "registry.example:5000" needs a string "username" and "password"$/)
      const missing = await runCli(['push', 'secrets', '--source', folder, '--registry-secrets', path.join(folder, 'nowhere.yml')], {env})
      assert.equal(missing.exitCode, 1)
      assert.match(missing.stderr.trim(), /^error: cannot read the registry secrets file .*nowhere\.yml: ENOENT$/)
      assert.equal(builder.uploads.length, uploads)
    } finally {
      rmSync(malformed, {force: true})
    }
  })
})
