import {strict as assert} from 'node:assert'
import path from 'node:path'

import type {Browser, Page} from 'playwright-core'

import {launchBrowser, openPage, screenshotFolder, type WatchedPage} from '../helpers/browser.js'
import {eventually, FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const DEVICE_UUID = 'da'.repeat(16)
const HOSTILE_UUID = 'db'.repeat(16)
const HOSTILE = '<img src=x onerror=alert(1)>'
const SPARE_UUID = 'dc'.repeat(16)

describe('web dashboard (real server, headless chromium)', function () {
  this.timeout(90_000)
  let server: TestServer
  let api: FleetApi
  let token: string
  let browser: Browser
  let fleet: {id: number; slug: string; uuid: string}
  let device: {id: number; uuid: string; api_key: string}
  let serviceId: number
  let older: {id: number; imageId: number}
  let newer: {id: number; imageId: number}
  let otherFleet: {id: number; slug: string}
  const pages: WatchedPage[] = []
  const screenshots = screenshotFolder('dashboard')

  const sendLog = async (message: string) => {
    const body = `${JSON.stringify({message, timestamp: Date.now(), isSystem: false, isStdErr: false, serviceId})}\n`
    const answer = await api.call('POST', `/device/v2/${DEVICE_UUID}/log-stream`, {token: device.api_key, body, headers: {'content-type': 'application/x-ndjson'}})
    assert.equal(answer.status, 201, answer.body)
  }

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

  before(async () => {
    server = await startServer()
    api = new FleetApi(server.url)
    token = await api.login(server.admin.username, server.admin.password)
    fleet = await api.createFleet(token, 'watchers')
    device = await api.registerDevice(token, fleet.id, DEVICE_UUID)
    await api.patch(token, `device(${device.id})`, {device_name: 'kitchen-pi'})
    const hostile = await api.registerDevice(token, fleet.id, HOSTILE_UUID)
    await api.patch(token, `device(${hostile.id})`, {device_name: HOSTILE})
    older = await api.createRelease(token, fleet.id, 'e'.repeat(32))
    await api.patch(token, `image(${older.imageId})`, {image_size: 3 * 1024 * 1024})
    await api.patch(token, `release(${older.id})`, {build_log: `[main] Step 1/1 : FROM scratch\n[main] ${HOSTILE}`, is_final: true})
    newer = await api.createRelease(token, fleet.id, 'f'.repeat(32))
    otherFleet = await api.createFleet(token, 'elsewhere')
    serviceId = (await api.call('GET', `/v7/service?$select=id&$filter=application eq ${fleet.id}`, {token})).json().d[0].id
    // A state report, as the agent sends it: the device reads as online.
    const report = {[DEVICE_UUID]: {status: 'Idle', os_version: 'Debian 12', supervisor_version: '0.1.0', ip_address: '10.0.0.2'}}
    assert.equal((await api.call('PATCH', '/device/v3/state', {token: device.api_key, json: report})).status, 200)
    browser = await launchBrowser()
  })

  after(async () => {
    for (const watched of pages) await watched.context.close().catch(() => undefined)
    await browser?.close()
    await server?.stop()
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
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/)
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

  it('signs in and lists the fleet with its online device, fast and small', async () => {
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
    assert.match(await row.innerText(), /latest \(fffffff\)/)
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
    await devices.getByRole('link', {name: 'kitchen-pi'}).waitFor()
    assert.match(await devices.innerText(), /Debian 12/)
    await page.getByLabel('Search devices').fill('kitchen')
    await eventually(async () => (await devices.getByRole('link').count()) === 1, 'the search to leave one device')
    await page.getByLabel('Search devices').fill('')
    // A device registering while the page is open shows up without a reload.
    const arriving = await api.registerDevice(token, fleet.id, 'dd'.repeat(16))
    await api.patch(token, `device(${arriving.id})`, {device_name: 'arrives-later'})
    await devices.getByRole('link', {name: 'arrives-later'}).waitFor()
    assert.equal((await api.call('DELETE', `/v7/device(${arriving.id})`, {token})).status, 200)
    await devices.getByRole('link', {name: 'arrives-later'}).waitFor({state: 'detached'})
    assert.match(await page.getByRole('region', {name: 'Releases'}).innerText(), /fffffff\s+success[^]*eeeeeee\s+success/)
    const variables = page.getByRole('region', {name: 'Variables'})
    await variables.getByLabel('Name').fill('GREETING')
    await variables.getByLabel('Value').fill('hello from the page')
    await variables.getByRole('button', {name: 'Set variable'}).click()
    await variables.getByRole('cell', {name: 'hello from the page'}).waitFor()
    const stored = (await api.call('GET', `/v7/application_environment_variable?$select=name,value&$filter=application eq ${fleet.id}`, {token})).json().d
    assert.deepEqual(stored, [{name: 'GREETING', value: 'hello from the page'}])
    await page.screenshot({path: path.join(screenshots, 'fleet.png'), fullPage: true})
  })

  it('creates a fleet, pins a fleet to a release and makes it track the latest again', async () => {
    const {page} = await signedIn()
    await page.getByLabel('Name').fill('created-in-page')
    await page.getByRole('button', {name: 'Create fleet'}).click()
    await page.getByRole('link', {name: 'created-in-page'}).waitFor()
    await page.getByRole('link', {name: 'watchers'}).click()
    await page.getByText('Runs: latest (fffffff)').waitFor()
    await page.getByLabel('Release', {exact: true}).selectOption({label: (await page.getByRole('option', {name: /^eeeeeee/}).innerText()).trim()})
    await page.getByRole('button', {name: 'Pin fleet to release'}).click()
    await page.getByText('Runs: pinned to eeeeeee').waitFor()
    const pinned = (await api.call('GET', `/v7/application(${fleet.id})?$select=should_track_latest_release,should_be_running__release`, {token})).json().d[0]
    assert.deepEqual(pinned, {should_track_latest_release: false, should_be_running__release: {__id: older.id}})
    await page.getByRole('button', {name: 'Track latest'}).click()
    await page.getByText('Runs: latest (fffffff)').waitFor()
    const tracking = (await api.call('GET', `/v7/application(${fleet.id})?$select=should_track_latest_release,should_be_running__release`, {token})).json().d[0]
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
    const spare = await api.registerDevice(token, fleet.id, SPARE_UUID)
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
    assert.deepEqual(await device(), {device_name: 'spare-renamed', is_pinned_on__release: {__id: newer.id}, belongs_to__application: {__id: fleet.id}})
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

  it('shows a log line on the device page within seconds of the device sending it, and restarts it from the page', async () => {
    await sendLog('history line')
    const {page} = await signedIn()
    await page.goto(`${server.url}/#/device/${DEVICE_UUID}`)
    const logs = page.getByRole('region', {name: 'Logs'})
    await logs.getByText('history line').waitFor()
    const sent = Date.now()
    await sendLog('live line from the device')
    await logs.getByText('live line from the device').waitFor({timeout: 5000})
    console.log(`      a live log line reached the page in ${Date.now() - sent} ms`)
    assert.match(await logs.innerText(), /\[main\] live line from the device/)
    await logs.getByRole('button', {name: 'Pause'}).click()
    await sendLog('line sent while paused')
    await logs.getByText('Paused: new lines wait until you resume.').waitFor()
    await eventually(async () => (await api.call('GET', `/device/v2/${DEVICE_UUID}/logs?count=1`, {token})).json()[0]?.message === 'line sent while paused', 'the server to hold the line')
    assert.doesNotMatch(await logs.innerText(), /line sent while paused/)
    await logs.getByRole('button', {name: 'Resume'}).click()
    await logs.getByText('line sent while paused').waitFor()
    await logs.getByLabel('Service').selectOption({label: 'System'})
    await logs.getByText('No log line yet.').waitFor()
    await logs.getByLabel('Service').selectOption({label: 'main'})
    await logs.getByText('line sent while paused').waitFor()
    await page.getByRole('button', {name: 'Restart services'}).click()
    const collected = await api.call('GET', `/device/v3/${DEVICE_UUID}/actions?wait=5`, {token: device.api_key})
    assert.deepEqual(collected.json(), [{action: 'restart', appId: fleet.id}])
    await page.screenshot({path: path.join(screenshots, 'device.png'), fullPage: true})
  })

  it('shows a hostile log line and device name as the characters they are, running nothing', async () => {
    const watched = await signedIn()
    const {page} = watched
    const fleetRow = page.getByRole('link', {name: 'watchers'})
    await fleetRow.click()
    await page.getByRole('link', {name: HOSTILE}).waitFor()
    await page.goto(`${server.url}/#/device/${DEVICE_UUID}`)
    const logs = page.getByRole('region', {name: 'Logs'})
    await logs.getByLabel('Log lines').waitFor()
    await sendLog(HOSTILE)
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
    await page.goto(`${server.url}/#/device/${DEVICE_UUID}`)
    await page.getByText('No such device, or not yours.').waitFor()
    const text = await page.locator('body').innerText()
    assert.doesNotMatch(text, /kitchen-pi|watchers|history line/)
  })

  it('runs no inline script: the CSP blocks one put into the page', async () => {
    const {page} = await signedIn()
    const outcome = await page.evaluate(async () => {
      const violation = new Promise<string>((resolve) => document.addEventListener('securitypolicyviolation', (event) => resolve(event.violatedDirective), {once: true}))
      const script = document.createElement('script')
      script.textContent = 'window.inlineRan = true'
      document.body.append(script)
      const directive = await Promise.race([violation, new Promise<string>((resolve) => setTimeout(() => resolve('none'), 2000))])
      return {ran: (window as unknown as {inlineRan?: boolean}).inlineRan === true, directive}
    })
    assert.deepEqual(outcome, {ran: false, directive: 'script-src-elem'})
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
    await watched.page.goto(`${server.url}/#/device/${DEVICE_UUID}`)
    await watched.page.getByRole('heading', {name: 'kitchen-pi'}).waitFor()
    const overflow = await watched.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert.ok(overflow <= 0, `the page is ${overflow} px wider than the screen`)
    await watched.page.screenshot({path: path.join(screenshots, 'device-phone.png'), fullPage: true})
  })
})
