/**
 * A fleet on one server: simulated agents (protocol only, no containers) poll their target state with If-None-Match
 * every POLL_SECONDS and report state every REPORT_SECONDS. For growing fleet sizes, the p99 latency of the state
 * polls beside the p99 of a bare `GET /ping` measured in the same window; the largest size under 100 ms is the answer.
 */
import {randomBytes} from 'node:crypto'

import {FleetApi} from '../test/helpers/fleet-api.js'
import {startServer} from '../test/helpers/server.js'
import {median, percentile} from './measure.js'

const FLEET_SIZES = [500, 1000, 2000, 4000, 8000]
const POLL_SECONDS = 5
const REPORT_SECONDS = 10
const WINDOW_SECONDS = 10
const REGISTER_CONCURRENCY = 20
const TARGET_P99_MS = 100

interface SimulatedDevice {
  uuid: string
  key: string
  etag?: string
}

async function inParallel<T>(count: number, concurrency: number, work: (index: number) => Promise<T>): Promise<T[]> {
  const results: T[] = []
  let next = 0
  await Promise.all(Array.from({length: concurrency}, async () => {
    while (next < count) {
      const index = next++
      results[index] = await work(index)
    }
  }))
  return results
}

export async function run(): Promise<void> {
  const server = await startServer({args: ['--device-heartbeat-timeout', '60']})
  const api = new FleetApi(server.url)
  const devices: SimulatedDevice[] = []
  try {
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'many')
    process.stdout.write(`fleet: simulated agents poll every ${POLL_SECONDS} s (If-None-Match) and report every ${REPORT_SECONDS} s; ${WINDOW_SECONDS} s per size\n`)
    let largestUnderTarget = 0
    for (const size of FLEET_SIZES) {
      const added = await inParallel(size - devices.length, REGISTER_CONCURRENCY, async () => {
        const registered = await api.registerDevice(token, fleet.id, randomBytes(16).toString('hex'))
        return {uuid: registered.uuid, key: registered.api_key}
      })
      devices.push(...added)
      const polls: number[] = []
      const pings: number[] = []
      let errors = 0
      const until = performance.now() + WINDOW_SECONDS * 1000
      const simulate = async (device: SimulatedDevice, offsetMs: number) => {
        await new Promise((resolve) => setTimeout(resolve, offsetMs))
        let nextReport = performance.now() + Math.random() * REPORT_SECONDS * 1000
        while (performance.now() < until) {
          const started = performance.now()
          const answer = await api.call('GET', `/device/v3/${device.uuid}/state`, {token: device.key, headers: device.etag ? {'if-none-match': device.etag} : {}})
          polls.push(performance.now() - started)
          if (answer.status === 200) device.etag = String(answer.headers.etag)
          else if (answer.status !== 304) errors++
          if (performance.now() >= nextReport) {
            nextReport += REPORT_SECONDS * 1000
            const report = await api.call('PATCH', '/device/v3/state', {token: device.key, json: {[device.uuid]: {status: 'Idle', supervisor_version: 'bench', apps: {}}}})
            if (report.status !== 200) errors++
          }

          await new Promise((resolve) => setTimeout(resolve, Math.max(0, POLL_SECONDS * 1000 - (performance.now() - started))))
        }
      }

      const pinger = (async () => {
        while (performance.now() < until) {
          const started = performance.now()
          await api.call('GET', '/ping')
          pings.push(performance.now() - started)
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      })()
      await Promise.all([pinger, ...devices.map((device) => simulate(device, Math.random() * POLL_SECONDS * 1000))])
      const p99 = percentile(polls, 0.99)
      if (p99 < TARGET_P99_MS && errors === 0) largestUnderTarget = size
      process.stdout.write(
        `  ${String(size).padStart(5)} devices: ${(polls.length / WINDOW_SECONDS).toFixed(0).padStart(4)} polls/s, state poll p50 ${median(polls).toFixed(1)} ms p99 ${p99.toFixed(1)} ms; /ping p99 ${percentile(pings, 0.99).toFixed(1)} ms; errors ${errors}\n`,
      )
      if (p99 >= TARGET_P99_MS * 3) break
    }

    process.stdout.write(`  largest fleet with state-poll p99 under ${TARGET_P99_MS} ms: ${largestUnderTarget || `none of ${FLEET_SIZES.join(', ')}`}\n`)
  } finally {
    await server.stop()
  }
}
