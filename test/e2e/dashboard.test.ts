import {strict as assert} from 'node:assert'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import type {Socket} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'
import type {Browser, Page} from 'playwright-core'
import WebSocket from 'ws'

import {type TerminalNews, WEB_TERMINAL_PATH} from '../../src/protocol/web-terminal.js'
import {AgentProcess, generateDeviceConfig, releaseOfBaseImage} from '../helpers/agent.js'
import {launchBrowser, openPage, screenshotFolder, type WatchedPage} from '../helpers/browser.js'
import {makeCliHome} from '../helpers/cli.js'
import {ensureBaseImage, ensureDocker} from '../helpers/docker.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const HOSTILE_UUID = 'db'.repeat(16)
const HOSTILE = '<img src=x onerror=alert(1)>'
const SPARE_UUID = 'dc'.repeat(16)
/** The label the agent puts on the containers of a device (as scripts/demo.sh finds them). */
const DEVICE_LABEL = 'io.flotilla.device-uuid'
/** Says it started with which greeting, leaves a mark in its own filesystem, then idles; leaves at once on SIGTERM. */
const SERVICE = 'trap "exit 0" TERM; echo in-the-service > /tmp/flotilla-marker; echo "started greeting=$GREETING"; while true; do sleep 1; done'

/** A terminal opened over the bridge as the dashboard opens it: the token in the first message. */
interface TerminalClient {
  socket: WebSocket
  news: TerminalNews[]
  output(): string
  closed: Promise<number>
}

describe('web dashboard (real server, agent and engine; headless chromium)', function () {
  this.timeout(120_000)
  const docker = new Docker()
  const home = makeCliHome()
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-dashboard-'))
  let server: TestServer
  let api: FleetApi
  let token: string
  let browser: Browser
  let agent: AgentProcess | undefined
  let uuid: string
  let fleet: {id: number; slug: string; uuid: string}
  let commit: string
  let archive: {id: number; slug: string}
  let older: {id: number; imageId: number}
  let newer: {id: number; imageId: number}
  let otherFleet: {id: number; slug: string}
  let hostileKey: string
  const images: string[] = []
  const pages: WatchedPage[] = []
  const screenshots = screenshotFolder('dashboard')

  const serviceContainer = () =>
    eventually(async () => (await docker.listContainers({filters: {label: [`${DEVICE_LABEL}=${uuid}`]}}))[0], `the service running\nagent: ${agent?.output}`, 60_000)

  /** Writes a line on the service's own stdout, as the service would print it; resolves once it is written. */
  const writeInService = async (line: string) => {
    const container = await serviceContainer()
    const execution = await docker.getContainer(container.Id).exec({Cmd: ['sh', '-c', 'echo "$0" > /proc/1/fd/1', line], AttachStdout: true, AttachStderr: true})
    for await (const chunk of await execution.start({})) void chunk
  }

  const storedLines = async () => ((await api.call('GET', `/device/v2/${uuid}/logs?count=all`, {token})).json() as Array<{message: string}>).map((line) => line.message)

  /** A new browser context signed in as `who` (the admin by default), on the fleet list. */
  const signedIn = async (who = {username: server.admin.username, password: server.admin.password}): Promise<WatchedPage> => {
    const watched = await openPage(browser)
    pages.push(watched)
    await signIn(watched.page, who)
    return watched
  }

  const signIn = async (page: Page, who: {username: string; password: string}) => {
    await page.goto(server.url)
    await page.getByLabel('Email or username').fill(who.username)
    await page.getByLabel('Password').fill(who.password)
    await page.getByRole('button', {name: 'Sign in'}).click()
    await page.getByRole('heading', {name: 'Fleets'}).waitFor()
  }

  /** `typed`: keystrokes sent in the same TCP write as the open message, as a fast typist's may arrive. */
  const openTerminal = async (open: Record<string, unknown>, typed?: Buffer, headers: Record<string, string> = {}): Promise<TerminalClient> => {
    const socket = new WebSocket(`${server.url.replace(/^http/, 'ws')}${WEB_TERMINAL_PATH}`, {headers})
    const news: TerminalNews[] = []
    let output = ''
    socket.on('message', (data, isBinary) => {
      if (isBinary) output += (data as Buffer).toString('utf8')
      else news.push(JSON.parse((data as Buffer).toString('utf8')) as TerminalNews)
    })
    const closed = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the terminal still open after 20 s: ${JSON.stringify(news)}`)), 20_000)
      socket.on('close', (code) => {
        clearTimeout(timer)
        resolve(code)
      })
    })
    closed.catch(() => undefined)
    await new Promise<void>((resolve, reject) => {
      socket.once('open', () => resolve())
      socket.once('error', reject)
    })
    const connection = (socket as unknown as {_socket: Socket})._socket
    connection.cork()
    socket.send(JSON.stringify(open))
    if (typed) socket.send(typed)
    process.nextTick(() => connection.uncork())
    return {socket, news, output: () => output, closed}
  }

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    fleet = await api.createFleet(token, 'watchers')
    await api.created(token, 'application_environment_variable', {application: fleet.id, name: 'GREETING', value: 'first'})
    // A commit of its own: the agent names containers after it, so none left by another test can take its name.
    commit = randomBytes(16).toString('hex')
    const release = await releaseOfBaseImage(api, token, fleet.id, {image: 'main', command: ['sh', '-c', SERVICE]}, commit)
    images.push(release.imageTag)
    const hostile = await api.registerDevice(token, fleet.id, HOSTILE_UUID)
    hostileKey = hostile.api_key
    await api.patch(token, `device(${hostile.id})`, {device_name: HOSTILE})

    // Releases to look at, pin and invalidate, in a fleet no device runs.
    archive = await api.createFleet(token, 'archive')
    older = await api.createRelease(token, archive.id, 'e'.repeat(32))
    await api.patch(token, `image(${older.imageId})`, {image_size: 3 * 1024 * 1024})
    await api.patch(token, `release(${older.id})`, {build_log: `[main] Step 1/1 : FROM scratch\n[main] ${HOSTILE}`, is_final: true})
    newer = await api.createRelease(token, archive.id, 'f'.repeat(32))
    otherFleet = await api.createFleet(token, 'elsewhere')

    const configPath = path.join(workDir, 'config.json')
    await generateDeviceConfig({serverUrl: server.url, token, home, fleetSlug: fleet.slug, file: configPath})
    agent = new AgentProcess(['--config', configPath, '--data-dir', path.join(workDir, 'agent'), '--host-network', '--local-api-port', '0', '--poll-interval', '1'])
    await agent.start()
    uuid = await eventually(async () => (JSON.parse(await readFile(configPath, 'utf8')) as {uuid?: string}).uuid, 'the device registered')
    // The agent may write its uuid before the server has registered it.
    const device = await eventually(async () => (await api.call('GET', `/v7/device?$select=id&$filter=uuid eq '${uuid}'`, {token})).json().d[0] as {id: number} | undefined, 'the device on the server')
    await api.patch(token, `device(${device.id})`, {device_name: 'kitchen-pi'})
    await eventually(async () => (await storedLines()).includes('started greeting=first'), `the service's first line\nagent: ${agent?.output}`, 60_000)
    // The agent reports its running release after the update, at most every 10 s: the pages below show it.
    await eventually(async () => (await api.call('GET', `/v7/device(${device.id})?$select=is_running__release`, {token})).json().d[0]?.is_running__release, 'the device reporting its running release', 30_000)
    browser = await launchBrowser()
  })

  after(async () => {
    for (const watched of pages) await watched.context.close().catch(() => undefined)
    await browser?.close()
    await agent?.kill()
    if (uuid) {
      for (const container of await docker.listContainers({all: true, filters: {label: [`${DEVICE_LABEL}=${uuid}`]}})) await docker.getContainer(container.Id).remove({force: true})
    }

    for (const image of images) await docker.getImage(image).remove().catch(() => undefined)
    await server?.stop()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
    console.log(`      screenshots: ${screenshots}`)
  })

  it('serves the page under a CSP forbidding inline script, and leaves every API path as it was', async () => {
    const page = await api.call('GET', '/')
    assert.equal(page.status, 200)
    assert.match(String(page.headers['content-type']), /^text\/html/)
    const csp = String(page.headers['content-security-policy'])
    assert.match(csp, /default-src 'self'/)
    assert.match(csp, /script-src 'self'(;|$)/)
    assert.match(csp, /frame-ancestors 'none'/)
    assert.doesNotMatch(csp, /unsafe-eval/)
    // Only <style> elements (xterm.js's) may be inline; scripts and style attributes may not.
    assert.deepEqual(csp.split('; ').filter((directive) => directive.includes('unsafe-inline')), ["style-src-elem 'self' 'unsafe-inline'"])
    assert.match(csp, /style-src 'self'(;|$)/)
    assert.equal(page.headers['x-content-type-options'], 'nosniff')
    assert.equal(page.headers['cache-control'], 'no-cache')
    assert.equal((await api.call('GET', '/', {headers: {'if-none-match': String(page.headers.etag)}})).status, 304)
    const script = /src="(\/dashboard\/app-\w+\.js)"/.exec(page.body)![1]
    const asset = await api.call('GET', script)
    assert.equal(asset.status, 200)
    assert.match(String(asset.headers['content-type']), /^text\/javascript/)
    assert.match(String(asset.headers['cache-control']), /immutable/)
    assert.equal((await api.call('GET', '/dashboard/nothing.js')).status, 404)
    assert.equal((await api.call('GET', '/dashboard/index.html')).status, 404)
    // The API's own answers are untouched: an unknown path is still the API's JSON 404, not the page.
    const unknown = await api.call('GET', '/v7/nothing-here')
    assert.notEqual(unknown.status, 200)
    assert.doesNotMatch(unknown.body, /<html/i)
    const missing = await api.call('GET', '/no-such-endpoint')
    assert.equal(missing.status, 404)
    assert.equal(missing.json(), 'no such endpoint: GET /no-such-endpoint')
    assert.equal((await api.call('GET', '/ping')).body, 'OK')
    assert.equal((await api.call('GET', '/.well-known/flotilla.json')).json().api, server.url)
  })

  it('signs in and lists the fleet with its online device (a real agent), fast and small', async () => {
    const watched = await openPage(browser)
    pages.push(watched)
    const {page} = watched
    const started = Date.now()
    await page.goto(server.url)
    await page.getByLabel('Email or username').waitFor()
    const pageMs = Date.now() - started
    const pageBytes = await watched.received()
    await page.getByLabel('Email or username').fill(server.admin.username)
    await page.getByLabel('Password').fill(server.admin.password)
    const clicked = Date.now()
    await page.getByRole('button', {name: 'Sign in'}).click()
    const row = page.getByRole('row').filter({has: page.getByRole('link', {name: 'watchers'})})
    await row.waitFor()
    const signInMs = Date.now() - clicked
    await eventually(async () => /online\s*1/.test(await row.innerText()) && /offline\s*1/.test(await row.innerText()), `the fleet row to count 1 online and 1 offline device: ${await row.innerText()}`, 10_000)
    assert.match(await row.innerText(), /raspberrypi4-64/)
    assert.match(await row.innerText(), new RegExp(`latest \\(${commit.slice(0, 7)}\\)`))
    // A reload: the session survives in sessionStorage, the hashed assets come from the cache.
    watched.resetReceived()
    const reloaded = Date.now()
    await page.reload()
    await row.waitFor()
    const reloadMs = Date.now() - reloaded
    const reloadBytes = await watched.received()
    console.log(`      dashboard on loopback: first load ${pageBytes} bytes in ${pageMs} ms; sign-in to fleet list ${signInMs} ms; reload to fleet list ${reloadMs} ms, ${reloadBytes} bytes`)
    assert.ok(pageBytes < 200_000, `the first load transferred ${pageBytes} bytes`)
    const stored = await page.evaluate(() => sessionStorage.getItem('flotilla.token'))
    assert.ok(stored && stored.length > 20)
    assert.ok(watched.urls.every((url) => !url.includes(stored)), 'the token appeared in a URL')
    await page.screenshot({path: path.join(screenshots, 'fleets.png'), fullPage: true})
  })

  it('shows a fleet: devices searchable, releases; a variable set from the page reaches the API', async () => {
    const {page} = await signedIn()
    await page.getByRole('link', {name: 'watchers'}).click()
    await page.getByRole('heading', {name: 'watchers'}).waitFor()
    const devices = page.getByRole('region', {name: 'Devices'})
    const agentRow = devices.getByRole('row').filter({has: page.getByRole('link', {name: 'kitchen-pi'})})
    await agentRow.waitFor()
    assert.match(await agentRow.innerText(), new RegExp(`${uuid.slice(0, 7)}[^]*online[^]*${commit.slice(0, 7)}`))
    await page.getByLabel('Search devices').fill('kitchen')
    await eventually(async () => (await devices.getByRole('link').count()) === 1, 'the search to leave one device')
    await page.getByLabel('Search devices').fill('')
    // A device registering while the page is open shows up without a reload.
    const arriving = await api.registerDevice(token, fleet.id, 'dd'.repeat(16))
    await api.patch(token, `device(${arriving.id})`, {device_name: 'arrives-later'})
    await devices.getByRole('link', {name: 'arrives-later'}).waitFor()
    assert.equal((await api.call('DELETE', `/v7/device(${arriving.id})`, {token})).status, 200)
    await devices.getByRole('link', {name: 'arrives-later'}).waitFor({state: 'detached'})
    assert.match(await page.getByRole('region', {name: 'Releases'}).innerText(), new RegExp(`${commit.slice(0, 7)}\\s+success`))
    const variables = page.getByRole('region', {name: 'Variables'})
    await variables.getByLabel('Name').fill('NOTE')
    await variables.getByLabel('Value').fill('hello from the page')
    await variables.getByRole('button', {name: 'Set variable'}).click()
    await variables.getByRole('cell', {name: 'hello from the page'}).waitFor()
    const stored = (await api.call('GET', `/v7/application_environment_variable?$select=name,value&$filter=application eq ${fleet.id} and name eq 'NOTE'`, {token})).json().d
    assert.deepEqual(stored, [{name: 'NOTE', value: 'hello from the page'}])
    await page.screenshot({path: path.join(screenshots, 'fleet.png'), fullPage: true})
  })

  it('creates a fleet, pins a fleet to a release and makes it track the latest again', async () => {
    const {page} = await signedIn()
    await page.getByLabel('Name').fill('created-in-page')
    await page.getByRole('button', {name: 'Create fleet'}).click()
    await page.getByRole('link', {name: 'created-in-page'}).waitFor()
    await page.getByRole('link', {name: 'archive'}).click()
    await page.getByText('Runs: latest (fffffff)').waitFor()
    await page.getByLabel('Release', {exact: true}).selectOption({label: (await page.getByRole('option', {name: /^eeeeeee/}).innerText()).trim()})
    await page.getByRole('button', {name: 'Pin fleet to release'}).click()
    await page.getByText('Runs: pinned to eeeeeee').waitFor()
    const pinned = (await api.call('GET', `/v7/application(${archive.id})?$select=should_track_latest_release,should_be_running__release`, {token})).json().d[0]
    assert.deepEqual(pinned, {should_track_latest_release: false, should_be_running__release: {__id: older.id}})
    await page.getByRole('button', {name: 'Track latest'}).click()
    await page.getByText('Runs: latest (fffffff)').waitFor()
    const tracking = (await api.call('GET', `/v7/application(${archive.id})?$select=should_track_latest_release,should_be_running__release`, {token})).json().d[0]
    assert.deepEqual(tracking, {should_track_latest_release: true, should_be_running__release: {__id: newer.id}})
  })

  it('shows a release: its images with sizes and its build log as text; invalidates it', async () => {
    const watched = await signedIn()
    const {page} = watched
    await page.goto(`${server.url}/#/release/${older.id}`)
    await page.getByRole('heading', {name: 'Release eeeeeee'}).waitFor()
    assert.match(await page.getByRole('region', {name: 'Services and images'}).innerText(), /main\s+\S*\s+3\.0 MiB/)
    const log = page.getByRole('region', {name: 'Build log'})
    assert.ok((await log.innerText()).includes(`Step 1/1 : FROM scratch\n[main] ${HOSTILE}`), await log.innerText())
    assert.equal(await page.locator('img').count(), 0)
    await page.screenshot({path: path.join(screenshots, 'release.png'), fullPage: true})
    await page.getByRole('button', {name: 'Invalidate'}).click()
    await page.getByRole('button', {name: 'Validate again'}).waitFor()
    assert.equal((await api.call('GET', `/v7/release(${older.id})?$select=is_invalidated`, {token})).json().d[0].is_invalidated, true)
    await page.getByRole('button', {name: 'Validate again'}).click()
    await page.getByRole('button', {name: 'Invalidate'}).waitFor()
    assert.deepEqual(watched.dialogs, [])
  })

  it('renames, tags, pins, moves and deletes a device from its page, asking before the deletion', async () => {
    const spare = await api.registerDevice(token, archive.id, SPARE_UUID)
    const {page} = await signedIn()
    await page.goto(`${server.url}/#/device/${SPARE_UUID}`)
    await page.getByLabel('New name').fill('spare-renamed')
    await page.getByRole('button', {name: 'Rename'}).click()
    await page.getByRole('heading', {name: 'spare-renamed'}).waitFor()
    const tags = page.getByRole('region', {name: 'Tags'})
    await tags.getByLabel('Name').fill('room')
    await tags.getByLabel('Value').fill('attic')
    await tags.getByRole('button', {name: 'Set tag'}).click()
    await tags.getByRole('cell', {name: 'attic'}).waitFor()
    await page.getByRole('button', {name: 'Pin device to release'}).click()
    await page.getByText('fffffff (pinned)').waitFor()
    const device = () => api.call('GET', `/v7/device(${spare.id})?$select=device_name,is_pinned_on__release,belongs_to__application`, {token}).then((answer) => answer.json().d[0])
    assert.deepEqual(await device(), {device_name: 'spare-renamed', is_pinned_on__release: {__id: newer.id}, belongs_to__application: {__id: archive.id}})
    await page.getByLabel('Fleet', {exact: true}).selectOption({label: otherFleet.slug})
    await page.getByRole('button', {name: 'Move device'}).click()
    await page.getByRole('link', {name: otherFleet.slug}).waitFor()
    assert.deepEqual(await device(), {device_name: 'spare-renamed', is_pinned_on__release: null, belongs_to__application: {__id: otherFleet.id}})
    await page.getByRole('button', {name: 'Delete…'}).click()
    await page.getByText('Delete device spare-renamed?').waitFor()
    assert.equal((await api.call('GET', `/v7/device(${spare.id})?$select=id`, {token})).json().d.length, 1, 'deleted before the confirmation')
    await page.getByRole('button', {name: 'Yes, delete'}).click()
    await page.getByRole('heading', {name: 'elsewhere'}).waitFor()
    assert.equal((await api.call('GET', `/v7/device(${spare.id})?$select=id`, {token})).json().d.length, 0)
  })

  it("shows a service's log line on the device page within seconds of the service writing it; pauses and filters", async () => {
    const {page} = await signedIn()
    await page.goto(`${server.url}/#/device/${uuid}`)
    const logs = page.getByRole('region', {name: 'Logs'})
    await logs.getByText('started greeting=first').first().waitFor()
    const written = Date.now()
    await writeInService('live line from the service')
    await logs.getByText('live line from the service').waitFor({timeout: 5000})
    console.log(`      a line the service wrote reached the page in ${Date.now() - written} ms`)
    assert.match(await logs.innerText(), /\[main\] live line from the service/)
    await logs.getByRole('button', {name: 'Pause'}).click()
    await writeInService('line written while paused')
    await logs.getByText('Paused: new lines wait until you resume.').waitFor()
    await eventually(async () => (await storedLines()).includes('line written while paused'), 'the server to hold the line')
    assert.doesNotMatch(await logs.innerText(), /line written while paused/)
    await logs.getByRole('button', {name: 'Resume'}).click()
    await logs.getByText('line written while paused').waitFor()
    await logs.getByLabel('Service').selectOption({label: 'System'})
    await eventually(async () => !/line written while paused/.test(await logs.innerText()), 'the service\'s lines to be filtered out')
    await logs.getByLabel('Service').selectOption({label: 'main'})
    await logs.getByText('line written while paused').waitFor()
    await page.screenshot({path: path.join(screenshots, 'device.png'), fullPage: true})
  })

  it('changes a variable from the device page, and the service restarts with it', async () => {
    const {page} = await signedIn()
    await page.goto(`${server.url}/#/device/${uuid}`)
    const before = (await serviceContainer()).Id
    const variables = page.getByRole('region', {name: 'Variables'})
    await variables.getByLabel('Name').fill('GREETING')
    await variables.getByLabel('Value').fill('set in the page')
    await variables.getByRole('button', {name: 'Set variable'}).click()
    await variables.getByRole('cell', {name: 'set in the page'}).waitFor()
    await page.getByRole('region', {name: 'Logs'}).getByText('started greeting=set in the page').waitFor({timeout: 60_000})
    assert.notEqual((await serviceContainer()).Id, before, 'the service kept its container')
  })

  it('restarts the services from the device page', async () => {
    const {page} = await signedIn()
    await page.goto(`${server.url}/#/device/${uuid}`)
    const logs = page.getByRole('region', {name: 'Logs'})
    await logs.getByText(/started greeting=/).first().waitFor()
    const started = () => logs.getByText(/started greeting=/).count()
    const before = {lines: await started(), container: await docker.getContainer((await serviceContainer()).Id).inspect()}
    await page.getByRole('button', {name: 'Restart services'}).click()
    await eventually(async () => (await started()) > before.lines, `the service to start again\nagent: ${agent?.output}`, 60_000)
    const after = await docker.getContainer((await serviceContainer()).Id).inspect()
    assert.ok(after.Id !== before.container.Id || after.State.StartedAt !== before.container.State.StartedAt, 'the service did not restart')
  })

  it("opens a terminal on the device's host in the page: echo $((6*7)) prints 42, and the pty follows the page's size", async () => {
    const watched = await signedIn()
    const {page} = watched
    const refused: string[] = []
    page.on('console', (message) => message.type() === 'error' && refused.push(message.text()))
    const sockets: string[] = []
    page.on('websocket', (socket) => sockets.push(socket.url()))
    await page.goto(`${server.url}/#/device/${uuid}`)
    const panel = page.getByRole('region', {name: 'Terminal'})
    await panel.getByRole('button', {name: 'Open terminal'}).click()
    await panel.getByText('Connected.').waitFor({timeout: 20_000})
    const screen = panel.getByLabel('Terminal on the host OS')
    const shown = async () => (await screen.innerText()).replaceAll('\u00a0', ' ')
    await page.keyboard.type('echo $((6*7))\n')
    await eventually(async () => /^42 *$/m.test(await shown()), `42 in the terminal: ${await shown()}`)
    const size = async (marker: string) => {
      await page.keyboard.type(`echo ${marker} $(stty size)\n`)
      const match = await eventually(async () => new RegExp(`^${marker} (\\d+) (\\d+) *$`, 'm').exec(await shown()) ?? undefined, `stty's answer: ${await shown()}`)
      return {rows: Number(match[1]), cols: Number(match[2])}
    }

    const wide = await size('wide')
    await page.setViewportSize({width: 700, height: 900})
    await eventually(async () => (await size(`narrow${Date.now()}`)).cols < wide.cols, 'the pty to narrow with the page')
    await page.screenshot({path: path.join(screenshots, 'terminal.png'), fullPage: true})
    assert.deepEqual(refused.filter((text) => /Content Security Policy/i.test(text)), [])
    const session = await page.evaluate(() => sessionStorage.getItem('flotilla.token'))
    assert.ok(session && watched.urls.every((url) => !url.includes(session)), 'the token in a URL')
    // The terminal's socket carries nothing in its URL: the token goes in its first message.
    assert.deepEqual(sockets, [`${server.url.replace(/^http/, 'ws')}${WEB_TERMINAL_PATH}`])
  })

  it("opens a terminal in a service from the page, inside the service's container", async () => {
    const {page} = await signedIn()
    await page.goto(`${server.url}/#/device/${uuid}`)
    const panel = page.getByRole('region', {name: 'Terminal'})
    await panel.getByLabel('Terminal on').selectOption({label: 'Service main'})
    await panel.getByRole('button', {name: 'Open terminal'}).click()
    await panel.getByText('Connected.').waitFor({timeout: 20_000})
    const screen = panel.getByLabel('Terminal on main')
    await page.keyboard.type('cat /tmp/flotilla-marker; exit 3\n')
    await panel.getByText('The session ended (exit status 3).').waitFor()
    assert.match((await screen.innerText()).replaceAll('\u00a0', ' '), /^in-the-service *$/m)
  })

  it('bridges the terminal over a WebSocket: the token in the first message, resizes, the exit status', async () => {
    // Typed at once, before the session is open: it waits, and reaches the shell.
    const terminal = await openTerminal({type: 'open', token, device: uuid.slice(0, 7), cols: 100, rows: 30}, Buffer.from('echo size $(stty size)\n'))
    await eventually(async () => /size 30 100/.test(terminal.output()), `the first size: ${terminal.output()}`)
    terminal.socket.send(JSON.stringify({type: 'resize', cols: 120, rows: 40}))
    terminal.socket.send(Buffer.from('echo size $(stty size); exit 4\n'))
    assert.equal(await terminal.closed, 1000)
    assert.match(terminal.output(), /size 40 120/)
    assert.deepEqual(terminal.news.at(-1), {type: 'exit', code: 4})
  })

  it("refuses a terminal to another organization's user, to a device key, to another site's page, and without a token", async () => {
    await server.addUser({email: 'stranger@other.test', username: 'stranger', password: 'stranger-password-1'})
    const strangerToken = await api.login('stranger', 'stranger-password-1')
    const refusals = [
      {open: {type: 'open', token: strangerToken, device: uuid, cols: 80, rows: 24}, message: `no device ${uuid.slice(0, 7)} that you can access`},
      {open: {type: 'open', token: strangerToken, device: uuid, service: 'main', cols: 80, rows: 24}, message: `no device ${uuid.slice(0, 7)} that you can access`},
      {open: {type: 'open', token: hostileKey, device: HOSTILE_UUID, cols: 80, rows: 24}, message: 'your session has ended, or the token is not a user\u2019s — sign in again'},
      {open: {type: 'open', device: uuid, cols: 80, rows: 24}, message: 'the "open" message needs the session token'},
      {open: {type: 'resize', cols: 80, rows: 24}, message: 'the first message must be "open"'},
    ]
    for (const {open, message} of refusals) {
      const terminal = await openTerminal(open)
      assert.equal(await terminal.closed, 1008, JSON.stringify(open))
      assert.deepEqual(terminal.news, [{type: 'error', message}])
      assert.equal(terminal.output(), '')
    }

    const upgradeStatus = (pathname: string, headers: Record<string, string>) =>
      new Promise<number | undefined>((resolve) => {
        const socket = new WebSocket(`${server.url.replace(/^http/, 'ws')}${pathname}`, {headers})
        socket.on('unexpected-response', (_request, response) => resolve(response.statusCode))
        socket.on('open', () => resolve(101))
        socket.on('error', () => resolve(undefined))
      })
    assert.equal(await upgradeStatus(WEB_TERMINAL_PATH, {origin: 'https://evil.example'}), 403)
    assert.equal(await upgradeStatus('/v7/device', {}), 404)
    assert.equal(await upgradeStatus(WEB_TERMINAL_PATH, {origin: server.url}), 101)
  })

  it("ends an open terminal when its session ends (signed out), for a member of the device's organization", async () => {
    await server.addUser({email: 'colleague@flotilla.test', username: 'colleague', password: 'colleague-password-1', organization: fleet.slug.split('/')[0]})
    const session = await api.login('colleague', 'colleague-password-1')
    const terminal = await openTerminal({type: 'open', token: session, device: uuid, cols: 80, rows: 24})
    await eventually(async () => terminal.news.some((news) => news.type === 'opened'), `the terminal open: ${JSON.stringify(terminal.news)}`)
    assert.equal((await api.call('POST', '/user/v1/logout', {token: session})).status, 200)
    assert.equal(await terminal.closed, 1008)
    assert.deepEqual(terminal.news.at(-1), {type: 'error', message: 'your session has ended — sign in again'})
  })

  it('shows a hostile log line and device name as the characters they are, running nothing', async () => {
    const watched = await signedIn()
    const {page} = watched
    const fleetRow = page.getByRole('link', {name: 'watchers'})
    await fleetRow.click()
    await page.getByRole('link', {name: HOSTILE}).waitFor()
    await page.goto(`${server.url}/#/device/${uuid}`)
    const logs = page.getByRole('region', {name: 'Logs'})
    await logs.getByText(/started greeting=/).first().waitFor()
    await writeInService(HOSTILE)
    await logs.getByText(HOSTILE).waitFor()
    await page.goto(`${server.url}/#/device/${HOSTILE_UUID}`)
    await page.getByRole('heading', {name: HOSTILE}).waitFor()
    assert.equal(await page.locator('img').count(), 0)
    assert.deepEqual(watched.dialogs, [])
    assert.deepEqual(watched.errors, [])
  })

  it("shows another organization's user none of it", async () => {
    const outsider = {email: 'outsider@flotilla.test', username: 'outsider', password: 'outsider-password-1'}
    await server.addUser(outsider)
    const {page} = await signedIn(outsider)
    await page.getByText('No fleet yet').waitFor()
    await page.goto(`${server.url}/#/fleet/${fleet.id}`)
    await page.getByText('No such fleet, or not yours.').waitFor()
    await page.goto(`${server.url}/#/device/${uuid}`)
    await page.getByText('No such device, or not yours.').waitFor()
    const text = await page.locator('body').innerText()
    assert.doesNotMatch(text, /kitchen-pi|watchers|started greeting/)
  })

  it('runs no inline script and applies no style attribute: the CSP blocks them', async () => {
    const {page} = await signedIn()
    // Each evaluate adds one element and waits for the report of the one violation it makes.
    const script = await page.evaluate(async () => {
      const violation = new Promise<string>((resolve) => document.addEventListener('securitypolicyviolation', (event) => resolve(event.violatedDirective), {once: true}))
      const element = document.createElement('script')
      element.textContent = 'window.inlineRan = true'
      document.body.append(element)
      const directive = await Promise.race([violation, new Promise<string>((resolve) => setTimeout(() => resolve('none'), 2000))])
      return {ran: (window as unknown as {inlineRan?: boolean}).inlineRan === true, directive}
    })
    const style = await page.evaluate(async () => {
      const violation = new Promise<string>((resolve) => document.addEventListener('securitypolicyviolation', (event) => resolve(event.violatedDirective), {once: true}))
      const element = document.createElement('p')
      element.setAttribute('style', 'display: none')
      document.body.append(element)
      const directive = await Promise.race([violation, new Promise<string>((resolve) => setTimeout(() => resolve('none'), 2000))])
      return {applied: getComputedStyle(element).display === 'none', directive}
    })
    assert.deepEqual({script, style}, {script: {ran: false, directive: 'script-src-elem'}, style: {applied: false, directive: 'style-src-attr'}})
  })

  it('signs out: the page forgets the token and the server ends the session', async () => {
    const {page} = await signedIn()
    const session = await page.evaluate(() => sessionStorage.getItem('flotilla.token'))
    assert.equal((await api.call('GET', '/user/v1/whoami', {token: session!})).status, 200)
    await page.getByRole('button', {name: 'Sign out'}).click()
    await page.getByRole('heading', {name: 'Sign in to flotilla'}).waitFor()
    assert.equal(await page.evaluate(() => sessionStorage.getItem('flotilla.token')), null)
    assert.equal((await api.call('GET', '/user/v1/whoami', {token: session!})).status, 401)
  })

  it('fits a phone-sized screen', async () => {
    const watched = await openPage(browser, {viewport: {width: 390, height: 844}})
    pages.push(watched)
    await signIn(watched.page, {username: server.admin.username, password: server.admin.password})
    await watched.page.goto(`${server.url}/#/device/${uuid}`)
    await watched.page.getByRole('heading', {name: 'kitchen-pi'}).waitFor()
    const overflow = await watched.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`)
    await watched.page.screenshot({path: path.join(screenshots, 'device-phone.png'), fullPage: true})
  })
})
