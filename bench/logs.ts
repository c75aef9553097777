/**
 * Logs: latency from a device's write (`POST /device/v2/<uuid>/log-stream`, as the agent sends it) to the line
 * printed by `flotilla logs <uuid> --tail`, beside a bare HTTP round trip to the same server in the same run;
 * then the sustained rate a subscriber keeps up with, counting every line so none is lost.
 */
import {type ChildProcess, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'

import {CLI_BIN, makeCliHome} from '../test/helpers/cli.js'
import {FleetApi} from '../test/helpers/fleet-api.js'
import {startServer} from '../test/helpers/server.js'
import {median, percentile} from './measure.js'

const LATENCY_SAMPLES = 200
const BURST_LINES = 20_000
const BURST_BATCH = 500

function follow(uuid: string, env: NodeJS.ProcessEnv): {child: ChildProcess; onLine: (listener: (line: string) => void) => void} {
  const child = spawn(process.execPath, [CLI_BIN, 'logs', uuid, '--tail', '--json'], {env: {PATH: process.env.PATH, ...env}, stdio: ['ignore', 'pipe', 'inherit']})
  const listeners: Array<(line: string) => void> = []
  let buffer = ''
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk
    let newline: number
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline)
      buffer = buffer.slice(newline + 1)
      for (const listener of listeners) listener(line)
    }
  })
  return {child, onLine: (listener) => listeners.push(listener)}
}

export async function run(): Promise<void> {
  const server = await startServer()
  const api = new FleetApi(server.url)
  try {
    const token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'bench')
    const device = await api.registerDevice(token, fleet.id, randomBytes(16).toString('hex'))
    const send = async (messages: string[]) => {
      const body = messages.map((message) => JSON.stringify({message, timestamp: Date.now(), isSystem: false, isStdErr: false})).join('\n') + '\n'
      const answer = await api.call('POST', `/device/v2/${device.uuid}/log-stream`, {token: device.api_key, body, headers: {'content-type': 'application/x-ndjson'}})
      if (answer.status !== 201) throw new Error(`log-stream answered ${answer.status}`)
    }

    const subscriber = follow(device.uuid, {HOME: makeCliHome(), FLOTILLA_URL: server.url, FLOTILLA_TOKEN: token})
    const arrivals = new Map<string, number>()
    let arrived = 0
    let waiting: {marker: string; resolve: () => void} | undefined
    subscriber.onLine((line) => {
      const message = (JSON.parse(line) as {message?: string}).message ?? ''
      arrived++
      arrivals.set(message, performance.now())
      if (waiting && message === waiting.marker) waiting.resolve()
    })
    const arrival = (marker: string) => new Promise<void>((resolve) => (waiting = {marker, resolve}))

    await send(['warm-up'])
    await Promise.race([arrival('warm-up'), new Promise((_, reject) => setTimeout(() => reject(new Error('the subscriber never received a line')), 30_000))])

    const latencies: number[] = []
    const roundTrips: number[] = []
    for (let sample = 0; sample < LATENCY_SAMPLES; sample++) {
      const pingStart = performance.now()
      await api.call('GET', '/ping')
      roundTrips.push(performance.now() - pingStart)
      const marker = `latency-${sample}`
      const arrivedNow = arrival(marker)
      const sent = performance.now()
      await send([marker])
      await arrivedNow
      latencies.push((arrivals.get(marker) ?? sent) - sent)
    }

    const before = arrived
    const burstStart = performance.now()
    const last = `burst-${BURST_LINES - 1}`
    const done = arrival(last)
    for (let first = 0; first < BURST_LINES; first += BURST_BATCH) {
      await send(Array.from({length: BURST_BATCH}, (_, index) => `burst-${first + index}`))
    }

    await done
    const burstSeconds = (performance.now() - burstStart) / 1000
    const received = arrived - before
    subscriber.child.kill()

    process.stdout.write(`logs, ${LATENCY_SAMPLES} lines one at a time (reference: GET /ping round trip p50 ${median(roundTrips).toFixed(2)} ms, p99 ${percentile(roundTrips, 0.99).toFixed(2)} ms)\n`)
    process.stdout.write(`  device write → "flotilla logs --tail" line: p50 ${median(latencies).toFixed(2)} ms, p99 ${percentile(latencies, 0.99).toFixed(2)} ms (${(median(latencies) / median(roundTrips)).toFixed(1)}× a round trip at p50)\n`)
    process.stdout.write(`  sustained: ${BURST_LINES} lines in batches of ${BURST_BATCH}, ${received} received (${received === BURST_LINES ? 'none lost' : `${BURST_LINES - received} LOST`}), ${(BURST_LINES / burstSeconds).toFixed(0)} lines/s\n`)
  } finally {
    await server.stop()
  }
}
