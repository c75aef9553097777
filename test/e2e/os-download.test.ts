import {strict as assert} from 'node:assert'
import {spawn} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {gunzipSync} from 'node:zlib'

import {parseBlockMap} from '../../src/image/bmap.js'
import {CLI_BIN, type CliResult, makeCliHome, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'
import {TerminalSession} from '../helpers/terminal.js'
import {compareRanges, type DiskFixture, makeDiskFixture} from './os-fixtures.js'

const TYPE = 'raspberrypi4-64'
const IMAGE_BYTES = 24 * 1024 * 1024
const STALL_AFTER = 4 * 1024 * 1024
/** The versions published, in folder order; newest first they are 6.0.0-beta.1, 5.1.20+rev10, 5.1.20+rev2, 5.1.20, 2.9.3. */
const SMALL_VERSIONS = ['2.9.3', '5.1.20', '5.1.20+rev2', '6.0.0-beta.1']
const LATEST = '5.1.20+rev10'
const HOST_APP_QUERY =
  "/v7/application?$filter=is_host eq true and is_for__device_type/any(dt:dt/slug in ('raspberrypi4-64'))" +
  "&$expand=owns__release($select=id,raw_version,variant,phase;$filter=is_final eq true and is_invalidated eq false and status eq 'success')"

const BMAP = `<?xml version="1.0"?><bmap version="2.0"><ImageSize>${IMAGE_BYTES}</ImageSize><BlockSize>4096</BlockSize><BlocksCount>6144</BlocksCount><MappedBlocksCount>1025</MappedBlocksCount><BlockMap><Range>0-1023</Range><Range>6143</Range></BlockMap></bmap>\n`

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest()

interface GatedProxy {
  url: string
  /** Everything clients sent through the proxy, as text. */
  sent(): string
  /** Resolves once the first /download answer has been held back after `stallAfter` bytes. */
  stalled: Promise<void>
  cut(): void
  close(): Promise<void>
}

/**
 * A loopback proxy to the server that lets the first /download answer through up to `stallAfter` bytes and
 * then holds it, so a test can interrupt a transfer at a known point (kill the CLI, or cut the connection).
 * Later connections pass freely.
 */
async function startGatedProxy(port: number, stallAfter: number): Promise<GatedProxy> {
  const sockets = new Set<net.Socket>()
  let sent = ''
  let gateUsed = false
  let onStalled!: () => void
  const stalled = new Promise<void>((resolve) => (onStalled = resolve))
  const proxy = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    let gated = false
    let passed = 0
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => {
        client.destroy()
        upstream.destroy()
      })
    }

    client.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1')
      sent += text
      if (!gateUsed && text.startsWith('GET /download')) gateUsed = gated = true
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (!gated) {
        client.write(chunk)
        return
      }

      const room = stallAfter - passed
      if (room > 0) client.write(chunk.subarray(0, room))
      passed += Math.min(room, chunk.length)
      if (passed >= stallAfter) {
        upstream.pause()
        onStalled()
      }
    })
    client.on('end', () => upstream.end())
    upstream.on('end', () => client.end())
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  const {port: proxyPort} = proxy.address() as net.AddressInfo
  return {
    url: `http://127.0.0.1:${proxyPort}`,
    sent: () => sent,
    stalled,
    cut() {
      for (const socket of sockets) socket.destroy()
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy()
        proxy.close(() => resolve())
      }),
  }
}

/** The CLI as a child the test can kill, with its result once it ends. */
function spawnCli(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [CLI_BIN, ...args], {cwd: PROJECT_ROOT, env: {PATH: process.env.PATH, NO_COLOR: '1', ...env}, stdio: ['ignore', 'pipe', 'pipe']})
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const done = new Promise<CliResult>((resolve) => child.once('close', (code) => resolve({stdout, stderr, exitCode: code ?? 1})))
  return {child, done}
}

function jsonLines(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
}

function sizeOf(file: string): number {
  return existsSync(file) ? statSync(file).size : 0
}

describe('os versions and os download (served from --images-dir)', function () {
  this.timeout(120_000)
  let server: TestServer
  let api: FleetApi
  let imagesDir: string
  let scratch: string
  let image: Buffer
  let userEnv: NodeJS.ProcessEnv
  let guestEnv: NodeJS.ProcessEnv
  let token: string

  before(async function () {
    imagesDir = mkdtempSync(path.join(tmpdir(), 'flotilla-images-'))
    scratch = mkdtempSync(path.join(tmpdir(), 'flotilla-download-'))
    image = randomBytes(IMAGE_BYTES)
    for (const version of SMALL_VERSIONS) {
      mkdirSync(path.join(imagesDir, TYPE, version), {recursive: true})
      writeFileSync(path.join(imagesDir, TYPE, version, 'balena.img'), `image of ${version}\n`)
    }

    mkdirSync(path.join(imagesDir, TYPE, LATEST))
    writeFileSync(path.join(imagesDir, TYPE, LATEST, 'balena.img'), image)
    writeFileSync(path.join(imagesDir, TYPE, LATEST, 'balena.bmap'), BMAP)
    mkdirSync(path.join(imagesDir, 'no-such-board', '1.0.0'), {recursive: true})
    writeFileSync(path.join(imagesDir, 'no-such-board', '1.0.0', 'os.img'), 'skipped')

    server = await startServer({args: ['--images-dir', imagesDir]})
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    userEnv = {HOME: makeCliHome(), FLOTILLA_URL: server.url}
    const login = await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env: userEnv, input: server.admin.password})
    assert.equal(login.exitCode, 0, login.stderr)
    guestEnv = {HOME: makeCliHome(), FLOTILLA_URL: server.url}
  })

  after(async function () {
    await server?.stop()
    for (const dir of [imagesDir, scratch, userEnv?.HOME, guestEnv?.HOME]) if (dir) rmSync(dir, {recursive: true, force: true})
  })

  it('lists the versions of a device type newest first, by semver and revision', async function () {
    const table = await runCli(['os', 'versions', TYPE], {env: userEnv})
    assert.equal(table.exitCode, 0, table.stderr)
    const rows = table.stdout.trim().split('\n')
    assert.match(rows[0], /^VERSION\s+ID\s+LATEST$/)
    assert.deepEqual(rows.slice(1).map((row) => row.split(/\s+/)[0]), ['6.0.0-beta.1', '5.1.20+rev10', '5.1.20+rev2', '5.1.20', '2.9.3'])
    assert.match(rows[2], /^5\.1\.20\+rev10\s+\d+\s+yes$/, 'latest is the newest version that is not a pre-release')

    const json = await runCli(['os', 'versions', TYPE, '--json'], {env: guestEnv})
    assert.equal(json.exitCode, 0, json.stderr)
    const versions = JSON.parse(json.stdout) as Array<{id: number; raw_version: string; variant: string; phase: string | null}>
    assert.deepEqual(versions.map((version) => version.raw_version), ['6.0.0-beta.1', '5.1.20+rev10', '5.1.20+rev2', '5.1.20', '2.9.3'])
    assert.deepEqual(Object.keys(versions[0]).sort(), ['id', 'phase', 'raw_version', 'variant'])
  })

  it('names an unknown device type, and a type without images, in one line', async function () {
    const unknown = await runCli(['os', 'versions', 'no-such-board'], {env: userEnv})
    assert.equal(unknown.exitCode, 2)
    assert.equal(unknown.stderr.trim(), 'error: invalid device type "no-such-board" — run "flotilla device-type list" to see the valid ones')
    const empty = await runCli(['os', 'download', 'raspberrypi3', '-o', path.join(scratch, 'rpi3.img')], {env: userEnv})
    assert.equal(empty.exitCode, 1)
    assert.equal(empty.stderr.trim(), 'error: no OS versions are published for device type "raspberrypi3"')
    const version = await runCli(['os', 'download', TYPE, '--version', '9.9.9', '-o', path.join(scratch, 'none.img')], {env: userEnv})
    assert.equal(version.exitCode, 1)
    assert.equal(version.stderr.trim(), `error: OS version "9.9.9" not found — run "flotilla os versions ${TYPE}" to see the published ones`)
    assert.equal(existsSync(path.join(scratch, 'none.img')), false)
  })

  it('answers the hostApp query of balena clients through pine, for users and guests', async function () {
    for (const credential of [token, undefined]) {
      const answer = await api.call('GET', HOST_APP_QUERY, {token: credential})
      assert.equal(answer.status, 200, answer.body)
      const [hostApp, ...others] = answer.json().d
      assert.equal(others.length, 0)
      assert.equal(hostApp.is_host, true)
      assert.equal(hostApp.slug, `balena_os/${TYPE}`)
      const releases = hostApp.owns__release as Array<{raw_version: string; variant: string; phase: null}>
      assert.deepEqual(releases.map((release) => release.raw_version).sort(), [...SMALL_VERSIONS, LATEST].sort())
      assert.deepEqual(Object.keys(releases[0]).sort(), ['id', 'phase', 'raw_version', 'variant'])
    }
  })

  it('keeps hostApp fleets out of fleet list and out of users\' reach for writes', async function () {
    assert.equal((await runCli(['fleet', 'create', 'garden', '--type', TYPE], {env: userEnv})).exitCode, 0)
    const list = await runCli(['fleet', 'list', '--json'], {env: userEnv})
    assert.equal(list.exitCode, 0, list.stderr)
    assert.deepEqual((JSON.parse(list.stdout) as Array<{app_name: string}>).map((fleet) => fleet.app_name), ['garden'])
    const info = await runCli(['fleet', 'info', `balena_os/${TYPE}`], {env: userEnv})
    assert.equal(info.exitCode, 1)

    const hostApp = (await api.call('GET', HOST_APP_QUERY, {token})).json().d[0]
    await api.call('PATCH', `/v7/application(${hostApp.id})`, {token, json: {app_name: 'mine'}})
    await api.call('DELETE', `/v7/application(${hostApp.id})`, {token})
    const release = await api.call('POST', '/v7/release', {token, json: {belongs_to__application: hostApp.id, commit: 'f'.repeat(32), status: 'success'}})
    assert.equal(release.status, 401, release.body)
    const invalidate = await api.call('PATCH', `/v7/release(${hostApp.owns__release[0].id})`, {token, json: {is_invalidated: true}})
    assert.equal(invalidate.status, 200)
    const after = (await api.call('GET', HOST_APP_QUERY, {token})).json().d
    assert.equal(after.length, 1, 'the hostApp is still there')
    assert.equal(after[0].app_name, TYPE)
    assert.equal(after[0].owns__release.length, SMALL_VERSIONS.length + 1, 'no release was invalidated')
    const organization = (await api.call('GET', '/v7/organization?$select=id', {token})).json().d[0].id
    const deviceType = (await api.call('GET', `/v7/device_type?$select=id&$filter=slug eq '${TYPE}'`)).json().d[0].id
    const fake = await api.call('POST', '/v7/application', {token, json: {app_name: 'fakeos', organization, is_for__device_type: deviceType, is_host: true, is_public: true}})
    assert.equal(fake.status, 401, 'users cannot make hostApp or public fleets')
  })

  it('serves /download with length, ranges (206/416), a sha-256 Digest, and clear 404s', async function () {
    const base = `/download?deviceType=${TYPE}&version=${encodeURIComponent(LATEST)}&fileType=.img`
    const whole = await api.call('HEAD', base)
    assert.equal(whole.status, 200)
    assert.equal(whole.headers['content-length'], String(IMAGE_BYTES))
    assert.equal(whole.headers['accept-ranges'], 'bytes')
    assert.equal(whole.headers.digest, `sha-256=${sha256(image).toString('base64')}`)
    const latest = await api.call('HEAD', `/download?deviceType=${TYPE}&version=latest`)
    assert.equal(latest.headers.digest, whole.headers.digest)

    const range = await api.call('GET', base, {headers: {range: 'bytes=1000-1999'}})
    assert.equal(range.status, 206)
    assert.equal(range.headers['content-range'], `bytes 1000-1999/${IMAGE_BYTES}`)
    assert.equal(range.headers['content-length'], '1000')
    const unsatisfiable = await api.call('GET', base, {headers: {range: `bytes=${IMAGE_BYTES}-`}})
    assert.equal(unsatisfiable.status, 416)
    assert.equal(unsatisfiable.headers['content-range'], `bytes */${IMAGE_BYTES}`)

    const noType = await api.call('GET', '/download?deviceType=no-such-board&version=1.0.0')
    assert.equal(noType.status, 404)
    assert.equal(noType.json(), 'no OS images for device type "no-such-board"')
    const noVersion = await api.call('GET', `/download?deviceType=${TYPE}&version=1.2.3`)
    assert.equal(noVersion.status, 404)
    assert.match(noVersion.json(), /^no OS version "1\.2\.3" for device type "raspberrypi4-64" \(available: 6\.0\.0-beta\.1, 5\.1\.20\+rev10, /)
  })

  it('downloads the latest image byte for byte, checked, with no part left behind', async function () {
    const output = path.join(scratch, 'latest.img')
    const result = await runCli(['os', 'download', TYPE, '--output', output, '--json'], {env: userEnv})
    assert.equal(result.exitCode, 0, result.stderr)
    const lines = jsonLines(result.stdout)
    const summary = lines.at(-1)!
    assert.deepEqual(
      {...summary, sha256: undefined},
      {type: 'result', file: output, device_type: TYPE, version: LATEST, size: IMAGE_BYTES, resumed_from: 0, retries: 0, sha256: undefined, verified: true, bmap: `${output}.bmap`},
    )
    assert.equal(summary.sha256, sha256(image).toString('hex'))
    assert.ok(lines.slice(0, -1).every((line) => line.type === 'progress' && line.phase === 'download'), 'only progress events before the result')
    assert.ok(readFileSync(output).equals(image))
    assert.equal(readFileSync(`${output}.bmap`, 'utf8'), BMAP, 'the block map is saved beside the image')
    assert.equal(existsSync(`${output}.part`), false)
    assert.equal(existsSync(`${output}.bmap.part`), false)

    const small = path.join(scratch, 'old.img')
    const old = await runCli(['os', 'download', TYPE, '--version', '5.1.20', '-o', small], {env: guestEnv})
    assert.equal(old.exitCode, 0, old.stderr)
    assert.match(old.stderr, /downloaded raspberrypi4-64 5\.1\.20 to .*old\.img \(16 B; sha-256 checked\)/)
    assert.equal(readFileSync(small, 'utf8'), 'image of 5.1.20\n')
    assert.equal(existsSync(`${small}.bmap`), false, 'no block map where the server has none')
  })

  it('serves the block map of a version with fileType=.bmap, checked by its Digest, and 404 where there is none', async function () {
    const bmap = await api.call('GET', `/download?deviceType=${TYPE}&version=latest&fileType=.bmap`)
    assert.equal(bmap.status, 200, bmap.body)
    assert.equal(bmap.body, BMAP)
    assert.match(String(bmap.headers['content-type']), /^application\/xml/)
    assert.equal(bmap.headers.digest, `sha-256=${sha256(Buffer.from(BMAP)).toString('base64')}`)
    const none = await api.call('GET', `/download?deviceType=${TYPE}&version=5.1.20&fileType=.bmap`)
    assert.equal(none.status, 404)
    assert.equal(none.json(), `no block map (.bmap) for ${TYPE} 5.1.20`)
  })

  it('replaces a block map left from an earlier download of another version, and does not keep one the server lacks', async function () {
    const output = path.join(scratch, 'reused.img')
    writeFileSync(`${output}.bmap`, 'stale')
    const result = await runCli(['os', 'download', TYPE, '--version', '2.9.3', '-o', output], {env: guestEnv})
    assert.equal(result.exitCode, 0, result.stderr)
    assert.equal(existsSync(`${output}.bmap`), false, 'a stale block map beside a new image is removed')
    const latest = await runCli(['os', 'download', TYPE, '-o', output, '--force'], {env: guestEnv})
    assert.equal(latest.exitCode, 0, latest.stderr)
    assert.match(latest.stderr, /block map in reused\.img\.bmap\)/)
    assert.equal(readFileSync(`${output}.bmap`, 'utf8'), BMAP)
  })

  it('resumes a download whose CLI was killed mid-transfer with a Range request, ending identical', async function () {
    const output = path.join(scratch, 'killed.img')
    const proxy = await startGatedProxy(server.port, STALL_AFTER)
    try {
      const env = {...guestEnv, FLOTILLA_URL: proxy.url}
      const first = spawnCli(['os', 'download', TYPE, '-o', output, '--json'], env)
      await proxy.stalled
      await eventually(async () => sizeOf(`${output}.part`) >= STALL_AFTER - 64 * 1024, 'the part file to fill up to the stall')
      first.child.kill('SIGKILL')
      await first.done
      const partSize = sizeOf(`${output}.part`)
      assert.equal(existsSync(output), false, 'a partial file never takes the final name')

      const second = await runCli(['os', 'download', TYPE, '-o', output, '--json'], {env})
      assert.equal(second.exitCode, 0, second.stderr)
      const summary = jsonLines(second.stdout).at(-1)!
      assert.equal(summary.resumed_from, partSize)
      assert.equal(summary.verified, true)
      assert.match(proxy.sent(), new RegExp(`\\r\\nrange: bytes=${partSize}-\\r\\n`, 'i'))
      assert.ok(readFileSync(output).equals(image))
      assert.equal(existsSync(`${output}.part`), false)
    } finally {
      await proxy.close()
    }
  })

  it('picks a dropped connection up again within the same run', async function () {
    const output = path.join(scratch, 'cut.img')
    const proxy = await startGatedProxy(server.port, STALL_AFTER)
    try {
      const run = spawnCli(['os', 'download', TYPE, '-o', output, '--json'], {...guestEnv, FLOTILLA_URL: proxy.url})
      await proxy.stalled
      await eventually(async () => sizeOf(`${output}.part`) >= STALL_AFTER - 64 * 1024, 'the part file to fill up to the stall')
      proxy.cut()
      const result = await run.done
      assert.equal(result.exitCode, 0, result.stderr)
      const lines = jsonLines(result.stdout)
      assert.equal(lines.filter((line) => line.type === 'retry').length, 1)
      assert.equal(lines.at(-1)!.retries, 1)
      const resumedAt = Number(/\r\nrange: bytes=(\d+)-\r\n/i.exec(proxy.sent())?.[1])
      assert.ok(resumedAt >= STALL_AFTER - 64 * 1024 && resumedAt <= STALL_AFTER, `resumed with a Range request from the part's end (${resumedAt})`)
      assert.equal(lines.at(-1)!.verified, true)
      assert.ok(readFileSync(output).equals(image))
    } finally {
      await proxy.close()
    }
  })

  it('rejects a corrupted part by its checksum: exit 1, one line, no file left', async function () {
    const output = path.join(scratch, 'corrupt.img')
    const part = Buffer.from(image.subarray(0, 1024 * 1024))
    part[4242] ^= 0xff
    writeFileSync(`${output}.part`, part)
    const result = await runCli(['os', 'download', TYPE, '-o', output], {env: guestEnv})
    assert.equal(result.exitCode, 1)
    const lines = result.stderr.trim().split('\n')
    assert.equal(lines.length, 1, result.stderr)
    assert.match(lines[0], /^error: the downloaded image does not match the checksum the server published \(sha-256 [\da-f]{64}, got [\da-f]{64}\) — the partial file was deleted; run the command again$/)
    assert.equal(existsSync(output), false)
    assert.equal(existsSync(`${output}.part`), false)
  })

  it('refuses to replace an existing output file without --force, and replaces it with it', async function () {
    const output = path.join(scratch, 'kept.img')
    writeFileSync(output, 'mine')
    const refused = await runCli(['os', 'download', TYPE, '--version', '5.1.20', '-o', output], {env: guestEnv})
    assert.equal(refused.exitCode, 2, refused.stderr)
    assert.match(refused.stderr, /^error: .*kept\.img already exists — add --force to replace it\n$/)
    assert.equal(readFileSync(output, 'utf8'), 'mine')
    const forced = await runCli(['os', 'download', TYPE, '--version', '5.1.20', '-o', output, '--force'], {env: guestEnv})
    assert.equal(forced.exitCode, 0, forced.stderr)
    assert.equal(readFileSync(output, 'utf8'), 'image of 5.1.20\n')
  })

  it('draws a progress bar on a terminal', async function () {
    const output = path.join(scratch, 'tty.img')
    const session = new TerminalSession(['os', 'download', TYPE, '-o', output], {...guestEnv})
    try {
      await session.waitFor(/downloaded raspberrypi4-64 5\.1\.20\+rev10/, 60_000)
      assert.equal(await session.exited, 0)
      assert.match(session.output, /Downloading \[#+\] 100%/)
      assert.ok(readFileSync(output).equals(image))
    } finally {
      session.kill()
    }
  })
})

describe('os download then os flash: the served block map makes the flash sparse', function () {
  this.timeout(180_000)
  let fixture: DiskFixture
  let server: TestServer
  let scratch: string
  let env: NodeJS.ProcessEnv

  before(async function () {
    fixture = makeDiskFixture(128, '')
    scratch = mkdtempSync(path.join(tmpdir(), 'flotilla-download-flash-'))
    const folder = path.join(fixture.directory, 'images', TYPE, '6.1.0')
    mkdirSync(folder, {recursive: true})
    // As an images folder holds them: the image and a bmap of another name beside it.
    renameSync(fixture.image, path.join(folder, 'balena-raspberrypi4-64.img'))
    copyFileSync(`${fixture.image}.bmap`, path.join(folder, 'balena-raspberrypi4-64.bmap'))
    fixture.image = path.join(folder, 'balena-raspberrypi4-64.img')
    server = await startServer({args: ['--images-dir', path.join(fixture.directory, 'images')]})
    env = {HOME: makeCliHome(), FLOTILLA_URL: server.url}
  })

  after(async function () {
    await server?.stop()
    fixture?.cleanup()
    for (const dir of [scratch, env?.HOME]) if (dir) rmSync(dir, {recursive: true, force: true})
  })

  it('downloads the raw image with its bmap, and os flash into a regular file writes the mapped ranges by it', async function () {
    const output = path.join(scratch, 'os.img')
    const download = await runCli(['os', 'download', TYPE, '-o', output, '--json'], {env})
    assert.equal(download.exitCode, 0, download.stderr)
    assert.equal(jsonLines(download.stdout).at(-1)!.bmap, `${output}.bmap`)
    assert.ok(readFileSync(output).equals(readFileSync(fixture.image)))
    assert.deepEqual(parseBlockMap(readFileSync(`${output}.bmap`, 'utf8')), fixture.blockMap)

    const destination = path.join(scratch, 'card.img')
    const flash = await runCli(['os', 'flash', output, '--drive', destination, '--yes'], {env})
    assert.equal(flash.exitCode, 0, flash.stderr)
    assert.match(flash.stderr, new RegExp(`using ${output.replaceAll('.', '\\.')}\\.bmap: `))
    assert.match(flash.stderr, /written and verified/)
    assert.equal(compareRanges(fixture.image, destination, fixture.blockMap.ranges), undefined)
  })

  it('shows the progress of a .gz made on the fly against its length, and checks it by the Digest the server publishes', async function () {
    mkdirSync(path.join(scratch, 'progress'))
    const output = path.join(scratch, 'progress', 'os.img.gz')
    const download = await runCli(['os', 'download', TYPE, '-o', output, '--json'], {env})
    assert.equal(download.exitCode, 0, download.stderr)
    const lines = jsonLines(download.stdout)
    const result = lines.at(-1)!
    const progress = lines.filter((line) => line.type === 'progress')
    assert.equal(result.verified, true, 'checked against the Digest of the .gz')
    assert.equal(result.size, statSync(output).size)
    assert.ok(progress.length > 0 && progress.every((line) => line.total === result.size), JSON.stringify(progress))
    assert.equal(progress.at(-1)!.fraction, 1)
    assert.ok(gunzipSync(readFileSync(output)).equals(readFileSync(fixture.image)))
  })

  it('downloads the .gz form with the same bmap, and os flash writes exactly the mapped bytes of it (every byte without it)', async function () {
    mkdirSync(path.join(scratch, 'gz'))
    const output = path.join(scratch, 'gz', 'os.img.gz')
    const download = await runCli(['os', 'download', TYPE, '-o', output], {env})
    assert.equal(download.exitCode, 0, download.stderr)
    assert.match(download.stderr, /block map in os\.img\.gz\.bmap\)/)

    const sparse = path.join(scratch, 'sparse.img')
    const flash = await runCli(['os', 'flash', output, '--drive', sparse, '--yes', '--json'], {env})
    assert.equal(flash.exitCode, 0, flash.stderr)
    const summary = jsonLines(flash.stdout).at(-1)!
    assert.deepEqual({sparse: summary.sparse, verified: summary.verified, bytes_written: summary.bytes_written}, {sparse: true, verified: true, bytes_written: fixture.blockMap.mappedBytes})
    assert.ok(fixture.blockMap.mappedBytes < fixture.blockMap.imageSize / 4, `${fixture.blockMap.mappedBytes} bytes mapped`)
    assert.equal(statSync(sparse).size, fixture.blockMap.imageSize)
    assert.equal(compareRanges(fixture.image, sparse, fixture.blockMap.ranges), undefined)

    rmSync(`${output}.bmap`)
    const whole = await runCli(['os', 'flash', output, '--drive', path.join(scratch, 'whole.img'), '--yes', '--json'], {env})
    assert.equal(whole.exitCode, 0, whole.stderr)
    assert.equal(jsonLines(whole.stdout).at(-1)!.bytes_written, fixture.blockMap.imageSize, 'without the bmap every byte is written')
  })
})
