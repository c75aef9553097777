/**
 * The dashboard's page load on loopback, in Debian's chromium: the bytes transferred and the time from navigation to
 * the fleet list shown (a signed-in tab: the session is in sessionStorage), cold (a new browser context, empty cache)
 * and warm (a reload). The reference, measured in the same rounds: the same browser navigating to the server's
 * `GET /ping`, the least a page load on this machine costs.
 */
import {readdirSync, statSync} from 'node:fs'
import path from 'node:path'

import {launchBrowser, openPage} from '../test/helpers/browser.js'
import {PROJECT_ROOT} from '../test/helpers/cli.js'
import {FleetApi} from '../test/helpers/fleet-api.js'
import {startServer} from '../test/helpers/server.js'
import {median} from './measure.js'

const ROUNDS = 7
const FLEETS = 3
const DEVICES_PER_FLEET = 10

export async function run(): Promise<void> {
  const server = await startServer()
  const browser = await launchBrowser()
  try {
    const api = new FleetApi(server.url)
    const token = await api.login(server.admin.username, server.admin.password)
    for (let fleetIndex = 0; fleetIndex < FLEETS; fleetIndex++) {
      const fleet = await api.createFleet(token, `fleet-${fleetIndex}`)
      for (let device = 0; device < DEVICES_PER_FLEET; device++) await api.registerDevice(token, fleet.id, `${fleetIndex}${device}`.padEnd(32, 'a'))
    }

    const samples = {cold: [] as number[], coldBytes: [] as number[], warm: [] as number[], warmBytes: [] as number[], ping: [] as number[]}
    for (let round = 0; round <= ROUNDS; round++) {
      const watched = await openPage(browser)
      await watched.context.addInitScript((session) => sessionStorage.setItem('flotilla.token', session), token)
      const fleetList = watched.page.getByRole('link', {name: `fleet-${FLEETS - 1}`})
      let started = performance.now()
      await watched.page.goto(server.url)
      await fleetList.waitFor()
      const cold = performance.now() - started
      const coldBytes = await watched.received()
      watched.resetReceived()
      started = performance.now()
      await watched.page.reload()
      await fleetList.waitFor()
      const warm = performance.now() - started
      const warmBytes = await watched.received()
      started = performance.now()
      await watched.page.goto(`${server.url}/ping`)
      const ping = performance.now() - started
      await watched.context.close()
      // The first round warms the server and the browser up; it is not counted.
      if (round === 0) continue
      samples.cold.push(cold)
      samples.coldBytes.push(coldBytes)
      samples.warm.push(warm)
      samples.warmBytes.push(warmBytes)
      samples.ping.push(ping)
    }

    const built = path.join(PROJECT_ROOT, 'dist', 'dashboard')
    const files = readdirSync(built).map((name) => `${name} ${statSync(path.join(built, name)).size} B`)
    process.stdout.write(`dashboard: ${FLEETS} fleets of ${DEVICES_PER_FLEET} devices, median of ${ROUNDS} rounds, loopback\n`)
    process.stdout.write(`  cold load to the fleet list: ${median(samples.cold).toFixed(0)} ms, ${median(samples.coldBytes)} bytes transferred\n`)
    process.stdout.write(`  reload to the fleet list:    ${median(samples.warm).toFixed(0)} ms, ${median(samples.warmBytes)} bytes transferred\n`)
    process.stdout.write(`  reference, GET /ping in the same browser: ${median(samples.ping).toFixed(0)} ms\n`)
    process.stdout.write(`  built files (uncompressed; the terminal's chunk loads only when a terminal opens): ${files.join(', ')}\n`)
  } finally {
    await browser.close()
    await server.stop()
  }
}
