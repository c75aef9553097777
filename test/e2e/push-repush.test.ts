import {strict as assert} from 'node:assert'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {type CliResult, makeCliHome, runCli} from '../helpers/cli.js'
import {ensureBaseImage, ensureDocker, type RunningRegistry, startRegistry} from '../helpers/docker.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

interface ReleaseImage {
  id: number
  is_stored_at__image_location: string
}

/** Pushes of a project the fleet's builder has seen: only changed contents travel, only changed services build. */
describe('flotilla push of a project pushed before', function () {
  this.timeout(300_000)
  const docker = new Docker()
  let registry: RunningRegistry
  let server: TestServer
  let api: FleetApi
  let token: string
  let home: string
  let folder: string

  const push = (fleet: string): Promise<CliResult> => runCli(['push', fleet, '--source', folder], {env: {HOME: home, FLOTILLA_URL: server.url}, timeoutMs: 240_000})

  async function pushed(fleet: string): Promise<{stderr: string; releaseId: number}> {
    const result = await push(fleet)
    assert.equal(result.exitCode, 0, result.stderr)
    const releaseId = Number(/\(id (\d+)\) built/.exec(result.stderr)?.[1])
    assert.ok(releaseId > 0, result.stderr)
    return {stderr: result.stderr, releaseId}
  }

  async function imagesOf(releaseId: number): Promise<ReleaseImage[]> {
    const answer = await api.call('GET', `/v7/image__is_part_of__release?$filter=is_part_of__release eq ${releaseId}&$expand=image($select=id,is_stored_at__image_location)`, {token})
    return (answer.json().d as Array<{image: ReleaseImage[]}>).map((part) => part.image[0])
  }

  async function releaseStatus(releaseId: number): Promise<string> {
    return (await api.call('GET', `/v7/release(${releaseId})?$select=status`, {token})).json().d[0].status
  }

  /** What the image's command prints, run on the engine. */
  async function output(image: ReleaseImage): Promise<string> {
    const container = await docker.createContainer({Image: `${image.is_stored_at__image_location}:latest`})
    try {
      await container.start()
      await container.wait()
      const logs = await container.logs({stdout: true, stderr: false, follow: false})
      return logs.subarray(8).toString('utf8').trim()
    } finally {
      await container.remove({force: true})
    }
  }

  function write(files: Record<string, string>): void {
    for (const [file, content] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(folder, file)), {recursive: true})
      writeFileSync(path.join(folder, file), content)
    }
  }

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    registry = await startRegistry()
    server = await startServer({args: ['--registry', registry.address]})
    home = makeCliHome()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env: {HOME: home, FLOTILLA_URL: server.url}, input: server.admin.password})
    await api.createFleet(token, 'repush', 'generic-amd64')
    await api.createFleet(token, 'another', 'generic-amd64')
  })

  beforeEach(() => {
    folder = mkdtempSync(path.join(tmpdir(), 'flotilla-repush-'))
    write({
      Dockerfile: 'FROM flotilla-test/busybox:latest\nCOPY . /app\nCMD ["cat", "/app/message.txt"]\n',
      'message.txt': `first ${folder}\n`,
      'lib/a.js': 'export const a = 1\n',
      'lib/b.js': 'export const b = 2\n',
    })
  })

  afterEach(() => rmSync(folder, {recursive: true, force: true}))

  after(async () => {
    await server?.stop()
    await registry?.stop()
  })

  it('sends no file contents for an unchanged project and makes a new release of the same image, without a build', async () => {
    const first = await pushed('repush')
    assert.match(first.stderr, /Upload: 4 files \(\d+ B\) sent, 0 files \(0 B\) unchanged since earlier pushes/)
    assert.match(first.stderr, /Step 1\/3 : FROM/)

    const second = await pushed('repush')
    assert.match(second.stderr, /Upload: 0 files \(0 B\) sent, 4 files \(\d+ B\) unchanged since earlier pushes/)
    assert.match(second.stderr, new RegExp(`\\[main\\] Build context, Dockerfile and base images unchanged since release ${first.releaseId}: reusing its image, no build`))
    assert.doesNotMatch(second.stderr, /Step 1\/3/)
    assert.notEqual(second.releaseId, first.releaseId)
    assert.equal(await releaseStatus(second.releaseId), 'success')
    assert.deepEqual(await imagesOf(second.releaseId), await imagesOf(first.releaseId))
    const fleet = (await api.call('GET', `/v7/application?$select=should_be_running__release&$filter=app_name eq 'repush'`, {token})).json().d[0]
    assert.equal(fleet.should_be_running__release.__id, second.releaseId)
  })

  it('sends a changed file alone and builds it in', async () => {
    const first = await pushed('repush')
    write({'message.txt': 'changed\n'})
    const second = await pushed('repush')
    assert.match(second.stderr, /Upload: 1 files \(8 B\) sent, 3 files \(\d+ B\) unchanged since earlier pushes/)
    assert.match(second.stderr, /Step 1\/3 : FROM/)
    const [before] = await imagesOf(first.releaseId)
    const [after] = await imagesOf(second.releaseId)
    assert.notEqual(after.id, before.id)
    assert.equal(await output(after), 'changed')
    assert.equal(await output(before), `first ${folder}`)
  })

  it("sends everything to another fleet's builder, which never saw the files", async () => {
    await pushed('repush')
    const other = await pushed('another')
    assert.match(other.stderr, /Upload: 4 files \(\d+ B\) sent, 0 files \(0 B\) unchanged since earlier pushes/)
  })
})
