import {strict as assert} from 'node:assert'
import {type ChildProcess, spawn} from 'node:child_process'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {CLI_BIN, type CliResult, makeCliHome, runCli} from '../helpers/cli.js'
import {ensureBaseImage, ensureDocker, type RunningRegistry, startRegistry} from '../helpers/docker.js'
import {startServer, type TestServer} from '../helpers/server.js'

interface ReleaseJson {
  id: number
  commit: string
  status: string
  tags: Record<string, string>
  note: string | null
}

/** Starts a push of a project whose build sleeps, and resolves once the build has visibly started. */
async function pushUntilBuilding(args: string[], env: NodeJS.ProcessEnv): Promise<{child: ChildProcess; exited: Promise<number | null>; stderr: () => string}> {
  const child = spawn(process.execPath, [CLI_BIN, ...args], {env})
  let stderr = ''
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the build never started:\n${stderr}`)), 60_000)
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
      if (stderr.includes('sleeping')) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  return {child, exited, stderr: () => stderr}
}

describe('flotilla push through the real builder, engine and registry', function () {
  this.timeout(300_000)
  const docker = new Docker()
  let registry: RunningRegistry
  let server: TestServer
  let home: string
  let projects: string

  const cli = (args: string[], options: {cwd?: string} = {}): Promise<CliResult> =>
    runCli(args, {cwd: options.cwd, env: {HOME: home, FLOTILLA_URL: server.url}, timeoutMs: 240_000})

  async function ok(args: string[], options: {cwd?: string} = {}): Promise<string> {
    const result = await cli(args, options)
    assert.equal(result.exitCode, 0, `flotilla ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`)
    return result.stdout
  }

  function project(name: string, files: Record<string, string>): string {
    const folder = path.join(projects, name)
    for (const [file, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(folder, file)), {recursive: true})
      writeFileSync(path.join(folder, file), content)
    }

    return folder
  }

  async function fleetTarget(fleet: string): Promise<number | null> {
    return JSON.parse(await ok(['fleet', fleet, '--json'])).should_be_running__release
  }

  async function releases(fleet: string): Promise<ReleaseJson[]> {
    return JSON.parse(await ok(['release', 'list', fleet, '--json']))
  }

  async function registryTags(repository: string): Promise<string[]> {
    const response = await fetch(`http://${registry.address}/v2/${repository}/tags/list`)
    if (response.status !== 200) return []
    return ((await response.json()) as {tags: string[] | null}).tags ?? []
  }

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    registry = await startRegistry()
    server = await startServer({args: ['--registry', registry.address]})
    home = makeCliHome()
    projects = mkdtempSync(path.join(tmpdir(), 'flotilla-push-'))
    await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env: {HOME: home, FLOTILLA_URL: server.url}, input: server.admin.password})
    // Built for the server's own CPU from the amd64 base image: cross-architecture builds are push-platform.test.ts's.
    await ok(['fleet', 'create', 'pi', '--type', 'generic-amd64'])
    await ok(['fleet', 'create', 'nuc', '--type', 'intel-nuc'])
  })

  after(async () => {
    await server?.stop()
    await registry?.stop()
    if (projects) rmSync(projects, {recursive: true, force: true})
  })

  it('pushes a single Dockerfile: the release succeeds, becomes the target, and the registry holds the image', async () => {
    const folder = project('single', {Dockerfile: 'FROM flotilla-test/busybox:latest\nRUN echo built > /built\nCMD ["cat", "/built"]\n'})
    const result = await cli(['push', 'pi', '--source', folder, '--release-tag', 'version', '1.0.0', '--note', 'first'])
    assert.equal(result.exitCode, 0, result.stderr)
    assert.match(result.stderr, /\[main\] Step 1\/3 : FROM flotilla-test\/busybox:latest/)
    assert.match(result.stderr, /release [\da-f]{32} \(id \d+\) built/)
    assert.match(result.stdout, /SERVICE\s+IMAGE SIZE\s+BUILD TIME\nmain\s+\d/)
    const [release] = await releases('pi')
    assert.equal(release.status, 'success')
    assert.deepEqual(release.tags, {version: '1.0.0'})
    assert.equal(await fleetTarget('pi'), release.id)
    const info = JSON.parse(await ok(['release', release.commit.slice(0, 8), '--json'])) as ReleaseJson
    assert.equal(info.note, 'first')
    const composition = JSON.parse(await ok(['release', String(release.id), '--composition', '--json'])).composition
    assert.ok(composition.services.main)
    const catalog = (await (await fetch(`http://${registry.address}/v2/_catalog`)).json()) as {repositories: string[]}
    assert.ok(catalog.repositories.length > 0)
    assert.deepEqual(await registryTags(catalog.repositories[0]), ['latest'])
  })

  it('resolves a Dockerfile.template for the fleet and honours .dockerignore', async () => {
    const folder = project('template', {
      'Dockerfile.template': 'FROM flotilla-test/busybox:latest\nCOPY . /src\nRUN test ! -e /src/big.bin && test ! -e /src/.git/HEAD && echo "arch=%%BALENA_ARCH%% machine=%%RESIN_MACHINE_NAME%%" > /built-for\n',
      '.dockerignore': 'big.bin\n',
      'big.bin': 'x'.repeat(8 * 1024 * 1024),
      '.git/HEAD': 'ref: refs/heads/main\n',
      'app.sh': 'echo hi\n',
    })
    const events = (await ok(['push', 'nuc', '--source', folder, '--json'])).trim().split('\n').map((line) => JSON.parse(line))
    assert.ok(events.some((event) => typeof event.message === 'string' && event.message.includes('RUN test ! -e /src/big.bin')))
    assert.ok(events.some((event) => typeof event.message === 'string' && event.message.includes('arch=amd64 machine=intel-nuc')))
    assert.ok(events.some((event) => event.isSuccess))
    const imageIds = (await docker.listImages()).flatMap((image) => image.RepoTags ?? [])
    const [release] = await releases('nuc')
    assert.equal(release.status, 'success')
    const tag = imageIds.find((name) => name.startsWith(registry.address))
    assert.ok(tag)
  })

  it('pushes a compose project with two services from their own contexts', async () => {
    const folder = project('compose', {
      'docker-compose.yml': 'version: "2.1"\nservices:\n  api:\n    build: ./api\n  worker:\n    build:\n      context: worker\n      dockerfile: Dockerfile.worker\n',
      'api/Dockerfile': 'FROM flotilla-test/busybox:latest\nRUN echo api > /name\n',
      'worker/Dockerfile.worker': 'FROM flotilla-test/busybox:latest\nRUN echo worker > /name\n',
    })
    const result = await cli(['push', 'pi', '--source', folder])
    assert.equal(result.exitCode, 0, result.stderr)
    assert.match(result.stdout, /api\s+\d.*\nworker\s+\d/)
    const [release] = await releases('pi')
    assert.equal(release.status, 'success')
    assert.equal(await fleetTarget('pi'), release.id)
  })

  it('fails a broken build with exit 1, its last lines, a failed release, and the target unchanged', async () => {
    const before = await fleetTarget('pi')
    const folder = project('broken', {Dockerfile: 'FROM flotilla-test/busybox:latest\nRUN echo "about to break" && exit 7\n'})
    const result = await cli(['push', 'pi', '--source', folder])
    assert.equal(result.exitCode, 1)
    assert.match(result.stderr, /about to break/)
    assert.match(result.stderr.trim().split('\n').at(-1) ?? '', /^error: the build failed \(release \d+\)/)
    const [release] = await releases('pi')
    assert.equal(release.status, 'failed')
    assert.equal(await fleetTarget('pi'), before)
  })

  it('makes a draft release that is not the target', async () => {
    const before = await fleetTarget('pi')
    const folder = project('draft', {Dockerfile: 'FROM flotilla-test/busybox:latest\nRUN echo draft\n'})
    await ok(['push', 'pi', '--source', folder, '--draft'])
    const [release] = await releases('pi')
    assert.equal(release.status, 'success')
    assert.notEqual(release.id, before)
    assert.equal(await fleetTarget('pi'), before)
  })

  it('finalizes a draft so the fleet follows it, and invalidates a release so it can no longer be pinned', async () => {
    const [draft] = await releases('pi')
    assert.equal(draft.status, 'success')
    await ok(['release', 'finalize', draft.commit.slice(0, 7)])
    const finalized = JSON.parse(await ok(['release', String(draft.id), '--json'])) as {is_final: boolean}
    assert.equal(finalized.is_final, true)
    assert.equal(await fleetTarget('pi'), draft.id)
    await ok(['release', 'invalidate', String(draft.id)])
    assert.equal(JSON.parse(await ok(['release', String(draft.id), '--json'])).is_invalidated, true)
    const failed = (await releases('pi')).find((release) => release.status === 'failed')
    assert.ok(failed)
    const refused = await cli(['release', 'finalize', String(failed.id)])
    assert.equal(refused.exitCode, 1)
    assert.match(refused.stderr, /only successful releases can be finalized/)
  })

  it('ends two concurrent pushes to one fleet both successful, with the newer release as the target', async () => {
    const first = project('concurrent-a', {Dockerfile: 'FROM flotilla-test/busybox:latest\nRUN echo a > /a\n'})
    const second = project('concurrent-b', {Dockerfile: 'FROM flotilla-test/busybox:latest\nRUN echo b > /b\n'})
    const results = await Promise.all([cli(['push', 'nuc', '--source', first]), cli(['push', 'nuc', '--source', second])])
    for (const result of results) assert.equal(result.exitCode, 0, result.stderr)
    const [newest, older] = await releases('nuc')
    assert.equal(newest.status, 'success')
    assert.equal(older.status, 'success')
    assert.equal(await fleetTarget('nuc'), Math.max(newest.id, older.id))
  })

  it('returns at once with --detached, printing the release id as JSON', async () => {
    const folder = project('detached', {Dockerfile: 'FROM flotilla-test/busybox:latest\nRUN echo detached\n'})
    const answer = JSON.parse(await ok(['push', 'nuc', '--source', folder, '--detached'])) as {releaseId: number; started: boolean}
    assert.equal(answer.started, true)
    const deadline = Date.now() + 60_000
    let status = 'running'
    while (status === 'running' && Date.now() < deadline) {
      status = JSON.parse(await ok(['release', String(answer.releaseId), '--json'])).status
    }

    assert.equal(status, 'success')
  })

  it('cancels the build on Ctrl-C: exit 130 and a cancelled release', async () => {
    const folder = project('slow', {Dockerfile: 'FROM flotilla-test/busybox:latest\nRUN echo sleeping && sleep 60\n'})
    const push = await pushUntilBuilding(['push', 'nuc', '--source', folder], {PATH: process.env.PATH, HOME: home, FLOTILLA_URL: server.url, NO_COLOR: '1'})
    push.child.kill('SIGINT')
    assert.equal(await push.exited, 130, push.stderr())
    const [release] = await releases('nuc')
    assert.equal(release.status, 'cancelled')
  })

  it('refuses a folder with nothing to build before uploading, an unknown fleet, and a fleet of another organization', async () => {
    const before = (await releases('pi')).length
    const empty = project('empty', {'README.md': 'nothing to build\n'})
    const nothing = await cli(['push', 'pi', '--source', empty])
    assert.equal(nothing.exitCode, 1)
    assert.match(nothing.stderr, /Dockerfile|docker-compose/)
    assert.equal((await releases('pi')).length, before)
    const unknown = await cli(['push', 'nosuchfleet', '--source', empty])
    assert.equal(unknown.exitCode, 1)
    assert.match(unknown.stderr, /fleet "nosuchfleet" not found/)

    await server.addUser({email: 'eve@example.com', username: 'eve', password: 'eve-password-1'})
    const eveHome = makeCliHome()
    await runCli(['login', '--credentials', '--email', 'eve', '--password', '-'], {env: {HOME: eveHome, FLOTILLA_URL: server.url}, input: 'eve-password-1'})
    const single = path.join(projects, 'single')
    const foreign = await runCli(['push', 'admin/pi', '--source', single], {env: {HOME: eveHome, FLOTILLA_URL: server.url}})
    assert.equal(foreign.exitCode, 1)
    assert.match(foreign.stderr, /not found/)
  })

  it('ends a push cleanly when the server dies mid-build, and the restarted server marks the release and its image interrupted', async () => {
    const doomed = await startServer()
    const env = {HOME: makeCliHome(), FLOTILLA_URL: doomed.url, NO_COLOR: '1', PATH: process.env.PATH}
    await runCli(['login', '--credentials', '--email', doomed.admin.email, '--password', '-'], {env, input: doomed.admin.password})
    assert.equal((await runCli(['fleet', 'create', 'fragile', '--type', 'intel-nuc'], {env})).exitCode, 0)
    const folder = project('doomed', {Dockerfile: 'FROM flotilla-test/busybox:latest\nRUN echo sleeping && sleep 60\n'})
    const push = await pushUntilBuilding(['push', 'fragile', '--source', folder], env)
    await doomed.crash()
    assert.equal(await push.exited, 1)
    assert.match(push.stderr().trim().split('\n').at(-1) ?? '', /^error: the connection to the builder was lost during the build/)
    const restarted = await startServer({dataDir: doomed.dataDir})
    try {
      const again = {...env, FLOTILLA_URL: restarted.url}
      await runCli(['login', '--credentials', '--email', doomed.admin.email, '--password', '-'], {env: again, input: doomed.admin.password})
      const list = await runCli(['release', 'list', 'fragile', '--json'], {env: again})
      assert.equal(list.exitCode, 0, list.stderr)
      assert.deepEqual((JSON.parse(list.stdout) as ReleaseJson[]).map((release) => release.status), ['interrupted'])
      const login = await fetch(`${restarted.url}/login_`, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({username: doomed.admin.email, password: doomed.admin.password})})
      const images = await fetch(`${restarted.url}/v7/image?$select=status,end_timestamp`, {headers: {authorization: `Bearer ${await login.text()}`}})
      const rows = ((await images.json()) as {d: Array<{status: string; end_timestamp: string | null}>}).d
      assert.deepEqual(rows.map((image) => image.status), ['interrupted'])
      assert.ok(rows[0].end_timestamp)
    } finally {
      await restarted.stop()
    }
  })

  describe('the build service refuses unsafe or oversized contexts', () => {
    let limited: TestServer
    let token: string

    before(async () => {
      limited = await startServer({args: ['--max-build-context', '1']})
      const login = await fetch(`${limited.url}/login_`, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify({username: limited.admin.email, password: limited.admin.password})})
      token = await login.text()
      const created = await fetch(`${limited.url}/v7/application`, {
        method: 'POST',
        headers: {'content-type': 'application/json', authorization: `Bearer ${token}`},
        body: JSON.stringify({app_name: 'edge', organization: 1, is_for__device_type: 1}),
      })
      assert.equal(created.status, 201, await created.text())
    })

    after(async () => limited?.stop())

    async function buildRaw(entries: Array<{name: string; content: Buffer | string; type?: 'file' | 'symlink'; linkname?: string}>) {
      const {pack} = await import('tar-stream')
      const {gzipSync} = await import('node:zlib')
      const archive = pack()
      for (const entry of entries) {
        if (entry.type === 'symlink') archive.entry({name: entry.name, type: 'symlink', linkname: entry.linkname})
        else archive.entry({name: entry.name, type: 'file'}, entry.content)
      }

      archive.finalize()
      const chunks: Buffer[] = []
      for await (const chunk of archive) chunks.push(chunk as Buffer)
      const response = await fetch(`${limited.url}/v3/build?slug=admin/edge`, {
        method: 'POST',
        headers: {authorization: `Bearer ${token}`, 'content-encoding': 'gzip', 'content-type': 'application/x-tar'},
        body: gzipSync(Buffer.concat(chunks)),
      })
      const events = JSON.parse(await response.text()) as Array<{message?: string; isError?: boolean; value?: number}>
      const releaseId = events.find((event) => event.value !== undefined)?.value
      const release = await (await fetch(`${limited.url}/v7/release(${releaseId})?$select=status,build_log`, {headers: {authorization: `Bearer ${token}`}})).json() as {d: Array<{status: string; build_log: string}>}
      return {events, release: release.d[0]}
    }

    it('fails the release of a context with a ../ entry, saying why', async () => {
      const {events, release} = await buildRaw([{name: 'Dockerfile', content: 'FROM flotilla-test/busybox:latest\n'}, {name: '../escape', content: 'x'}])
      assert.ok(events.some((event) => event.isError && /"\.\."/.test(event.message ?? '')))
      assert.equal(release.status, 'failed')
      assert.match(release.build_log, /"\.\."/)
    })

    it('fails the release of a context with a link escaping it', async () => {
      const {release} = await buildRaw([{name: 'Dockerfile', content: 'FROM flotilla-test/busybox:latest\n'}, {name: 'passwd', content: '', type: 'symlink', linkname: '../../../etc/passwd'}])
      assert.equal(release.status, 'failed')
      assert.match(release.build_log, /link that escapes/)
    })

    it('fails the release of a context over the size limit', async () => {
      const {release} = await buildRaw([{name: 'Dockerfile', content: 'FROM flotilla-test/busybox:latest\n'}, {name: 'huge.bin', content: Buffer.alloc(2 * 1024 * 1024)}])
      assert.equal(release.status, 'failed')
      assert.match(release.build_log, /the build context is larger than 1 MiB unpacked — leave some out with .dockerignore/)
    })
  })
})
