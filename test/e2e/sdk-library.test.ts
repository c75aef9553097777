import {strict as assert} from 'node:assert'
import {type ChildProcess, execFile, spawn} from 'node:child_process'
import {copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import {PROJECT_ROOT} from '../helpers/cli.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const run = promisify(execFile)
const UUID = '5d4'.repeat(10) + '5d'
const EXAMPLE = path.join(PROJECT_ROOT, 'examples', 'sdk', 'fleet-devices.mjs')

/**
 * flotilla's SDK used as a library, as a user's project would: a folder whose node_modules/flotilla is this package
 * (as `npm install flotilla` makes it), importing `flotilla/sdk` through package.json's exports.
 */
describe('the SDK as a library (flotilla/sdk)', function () {
  this.timeout(120_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  let fleet: {id: number; slug: string}
  let project: string
  const children: ChildProcess[] = []

  const runExample = (args: string[]) => {
    const child = spawn(process.execPath, ['fleet-devices.mjs', ...args], {cwd: project, env: {PATH: process.env.PATH, FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token}})
    children.push(child)
    const output = {stdout: '', stderr: ''}
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output.stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output.stderr += chunk))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    return {child, output, exited}
  }

  before(async () => {
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.email, server.admin.password)
    fleet = await api.createFleet(token, 'sdkfleet')
    const device = await api.registerDevice(token, fleet.id, UUID)
    const logged = await api.call('POST', `/device/v2/${UUID}/logs`, {token: device.api_key, json: [{message: 'hello from the sdk test', timestamp: Date.now(), isSystem: false, isStdErr: false}]})
    assert.ok(logged.status < 300, logged.body)
    project = mkdtempSync(path.join(tmpdir(), 'flotilla-sdk-user-'))
    mkdirSync(path.join(project, 'node_modules'))
    symlinkSync(PROJECT_ROOT, path.join(project, 'node_modules', 'flotilla'), 'dir')
    writeFileSync(path.join(project, 'package.json'), JSON.stringify({name: 'sdk-user', private: true, type: 'module'}))
    copyFileSync(EXAMPLE, path.join(project, 'fleet-devices.mjs'))
  })

  after(async () => {
    for (const child of children) child.kill('SIGKILL')
    await server?.stop()
    if (project) rmSync(project, {recursive: true, force: true})
  })

  it("runs the README's example from a user's project: lists a fleet's devices", async () => {
    const listing = runExample([fleet.slug])
    assert.equal(await listing.exited, 0, listing.output.stderr)
    assert.equal(listing.output.stdout, `${UUID} ${UUID.slice(0, 7)} offline\n`)
    const unknown = runExample(['nosuchfleet'])
    assert.equal(await unknown.exited, 1)
    assert.match(unknown.output.stderr, /^error: .*nosuchfleet/)
  })

  it("follows a device's logs through the SDK until interrupted", async () => {
    const following = runExample([fleet.slug, UUID])
    await eventually(async () => following.output.stdout.includes('] hello from the sdk test\n'), `the log line\nstdout: ${following.output.stdout}\nstderr: ${following.output.stderr}`)
    following.child.kill('SIGINT')
    assert.equal(await following.exited, 0, following.output.stderr)
  })

  it('ships types: a TypeScript project type-checks against flotilla/sdk, and only the SDK is exported', async () => {
    writeFileSync(
      path.join(project, 'check.ts'),
      [
        "import {FleetClient, listDevices, type Device} from 'flotilla/sdk'",
        "const client = new FleetClient({remote: 'http://127.0.0.1:7171'})",
        'export const uuids: Promise<string[]> = listDevices(client).then((devices: Device[]) => devices.map((device) => device.uuid))',
        '// @ts-expect-error -- the SDK checks its arguments',
        'listDevices(client, {fleet: 5})',
        '',
      ].join('\n'),
    )
    const tsc = path.join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
    const checked = await run(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--typeRoots', path.join(PROJECT_ROOT, 'node_modules', '@types'), 'check.ts'], {cwd: project}).then(
      () => ({code: 0, stdout: ''}),
      (error: {code: number; stdout: string}) => error,
    )
    assert.equal(checked.code, 0, checked.stdout)
    const internal = await run(process.execPath, ['--input-type=module', '-e', "await import('flotilla/dist/server/app.js')"], {cwd: project}).then(
      () => '',
      (error: {stderr: string}) => error.stderr,
    )
    assert.match(internal, /ERR_PACKAGE_PATH_NOT_EXPORTED/)
  })
})
