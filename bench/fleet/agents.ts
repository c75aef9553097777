/**
 * The fleet bench's simulated agents, in a process of their own (forked by bench/fleet.ts) so that the server's
 * CPU is the server's. They speak the real protocol: state polls with If-None-Match, state reports, and device
 * links opened with the agent's own link client (src/agent/device-link.ts). No containers run.
 */
import {monitorEventLoopDelay} from 'node:perf_hooks'
import type {Duplex} from 'node:stream'

import {DeviceLink} from '../../src/agent/device-link.js'
import {BenchHttpClient, inParallel, RawHttpPool} from './http-client.js'
import {percentile} from '../measure.js'
import type {FromAgents, ReportedRelease, SimulatedDevice, ToAgents} from './messages.js'

const MAX_SOCKETS = 256
/**
 * Connections the polling devices share: room for 6,000 requests a second (20,000 devices) each taking 170 ms, past
 * the 100 ms goal, so the generator queues requests only once the server misses the goal anyway.
 */
const POLL_SOCKETS = 1024
const HANDSHAKES_IN_FLIGHT = 64
/** The backlog of the start has drained once the requests outstanding stay low for SETTLE_CHECKS checks in a row. */
const SETTLE_CHECK_MS = 100
const SETTLE_CHECKS = 10
const SETTLE_DEADLINE_MS = 120_000
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const send = (message: FromAgents) => process.send?.(message)

const etags = new Map<string, string>()

function reportOf(device: SimulatedDevice, release: ReportedRelease) {
  return {
    [device.uuid]: {
      status: 'Idle',
      supervisor_version: 'bench',
      os_version: 'balenaOS 6.0.0',
      ip_address: '192.168.1.2',
      apps: {[release.appUuid]: {release_uuid: release.commit, releases: {[release.commit]: {update_status: 'done', services: {main: {image: release.image, status: 'Running'}}}}}},
    },
  }
}

/** Polls and reports until `stop`; keeps samples only while `measure` is on. */
class PollingFleet {
  private measuring = false
  private stopping = false
  private readonly polls: number[] = []
  private readonly reports: number[] = []
  /** How long each measured request waited here for a socket: part of its latency that is not the server's. */
  private readonly socketWaits: number[] = []
  /** Requests sent while measuring, answered or not: the rate the devices asked of the server. */
  private readonly sent = {polls: 0, reports: 0}
  /** This process's own event-loop delay while measuring: how late its devices send, and read their answers. */
  private readonly loopDelay = monitorEventLoopDelay({resolution: 10})
  private errors = 0
  /** Of the errors, the 503s: a balancer that took every server out answers them (a server never does here). */
  private unavailable = 0
  private firstError?: string
  private readonly loops: Array<Promise<void>> = []
  private readonly client: RawHttpPool
  /**
   * For each of the first two rounds, one promise per loop, resolved once its request is answered: the first poll
   * (a 200 with the target) and report (written in full), then the second ones, which queue behind whatever backlog
   * the first ones left.
   */
  private readonly answered: [Array<Promise<void>>, Array<Promise<void>>] = [[], []]
  private readonly createdAt = performance.now()

  /** Settles once the connections are open and every device's loops have started. */
  private readonly started: Promise<void>

  constructor(private readonly start: Extract<ToAgents, {type: 'start'}>) {
    this.client = new RawHttpPool(new URL(start.url), POLL_SOCKETS)
    this.started = this.client.open().then(() => {
      for (const device of start.devices) this.loops.push(this.pollLoop(device), this.reportLoop(device))
    })
  }

  /**
   * Resolves once every device has been answered its first two polls and reports, and the backlog they left has
   * drained: all devices come up at once here, so their first requests are a storm of full-cost ones (a server
   * restarted under its fleet sees the same), and the steady state starts once no more requests are outstanding
   * than a server answering within the goal would have (the rate times the goal) for a whole second; or at a deadline.
   */
  async warmed(): Promise<FromAgents> {
    await this.started
    await Promise.all(this.answered[0])
    const firstMs = performance.now() - this.createdAt
    await Promise.all(this.answered[1])
    const perSecond = this.start.devices.length * (1000 / this.start.pollMs + 1000 / this.start.reportMs)
    const settled = await this.backlogDrained(Math.ceil((perSecond * this.start.goalMs) / 1000))
    return {type: 'warmed', firstMs, settledMs: performance.now() - this.createdAt, settled}
  }

  private async backlogDrained(limit: number): Promise<boolean> {
    const deadline = performance.now() + SETTLE_DEADLINE_MS
    let calmChecks = 0
    while (calmChecks < SETTLE_CHECKS) {
      if (performance.now() > deadline) return false
      await sleep(SETTLE_CHECK_MS)
      calmChecks = this.client.outstanding <= limit ? calmChecks + 1 : 0
    }

    return true
  }

  measure(): void {
    this.measuring = true
    this.loopDelay.enable()
  }

  async stop(): Promise<FromAgents> {
    this.measuring = false
    this.loopDelay.disable()
    const generator = {
      sentPolls: this.sent.polls,
      sentReports: this.sent.reports,
      socketWaitP99: this.socketWaits.length > 0 ? percentile(this.socketWaits, 0.99) : 0,
      loopDelayP99: this.loopDelay.percentile(99) / 1e6,
      sockets: this.client.openSockets,
    }
    this.stopping = true
    await this.started
    await Promise.all(this.loops)
    this.client.close()
    return {type: 'polled', polls: this.polls, reports: this.reports, generator, errors: this.errors, unavailable: this.unavailable, firstError: this.firstError}
  }

  private failed(what: string, status?: number): void {
    this.errors++
    if (status === 503) this.unavailable++
    this.firstError ??= what
  }

  private async every(periodMs: number, work: () => Promise<void>): Promise<void> {
    const answered = this.answered.map((promises) => {
      let resolve!: () => void
      promises.push(new Promise((resolved) => (resolve = resolved)))
      return resolve
    })
    await sleep(Math.random() * periodMs)
    // Each device keeps the phase it drew: a round that overran its period (the storm of the start) waits for its
    // next slot rather than going at once, or the devices slowed together would stay bunched and send more than asked.
    const origin = performance.now()
    let slot = 0
    for (let round = 0; !this.stopping; round++) {
      await work().catch((error: unknown) => this.failed((error as Error).message))
      answered[round]?.()
      const elapsed = performance.now() - origin
      slot = Math.max(slot + 1, Math.ceil(elapsed / periodMs))
      await sleep(slot * periodMs - elapsed)
    }
  }

  private pollLoop(device: SimulatedDevice): Promise<void> {
    // The same request each time until the target changes: encoded once per ETag, to spare the generator's CPU.
    let request: {etag?: string; bytes: Buffer} | undefined
    return this.every(this.start.pollMs, async () => {
      const etag = etags.get(device.uuid)
      if (!request || request.etag !== etag) {
        request = {etag, bytes: this.client.encode('GET', `/device/v3/${device.uuid}/state`, {authorization: `Bearer ${device.key}`, ...(etag ? {'if-none-match': etag} : {})})}
      }

      const started = performance.now()
      if (this.measuring) this.sent.polls++
      const answer = await this.client.send(request.bytes)
      if (this.measuring) {
        this.polls.push(performance.now() - started)
        this.socketWaits.push(answer.socketWaitMs)
      }

      if (answer.status === 200 && answer.etag) etags.set(device.uuid, answer.etag)
      else if (answer.status !== 304) this.failed(`state poll answered ${answer.status}: ${answer.body.slice(0, 200)}`, answer.status)
    })
  }

  private reportLoop(device: SimulatedDevice): Promise<void> {
    const report = this.client.encode('PATCH', '/device/v3/state', {authorization: `Bearer ${device.key}`}, JSON.stringify(reportOf(device, this.start.release)))
    return this.every(this.start.reportMs, async () => {
      const started = performance.now()
      if (this.measuring) this.sent.reports++
      const answer = await this.client.send(report)
      if (this.measuring) {
        this.reports.push(performance.now() - started)
        this.socketWaits.push(answer.socketWaitMs)
      }

      if (answer.status !== 200) this.failed(`state report answered ${answer.status}: ${answer.body.slice(0, 200)}`, answer.status)
    })
  }
}

/** Devices holding links: each notice to update fetches the target, and a changed one is timed. */
class LinkedFleet {
  private readonly links: DeviceLink[] = []
  private readonly notices: number[] = []
  private readonly changedFetches: number[] = []
  private linkFailures = 0
  private errors = 0
  private firstError?: string
  private readonly client: BenchHttpClient

  constructor(private readonly request: Extract<ToAgents, {type: 'link'}>) {
    this.client = new BenchHttpClient(request.url, MAX_SOCKETS)
  }

  async link(): Promise<FromAgents> {
    const shell = {injectDirectConnection: (stream: Duplex) => stream.destroy(), injectLinkConnection: (stream: Duplex) => stream.destroy()}
    for (const device of this.request.devices) {
      const link = new DeviceLink({
        uuid: device.uuid,
        deviceApiKey: device.key,
        dataDir: this.request.dataDir,
        endpoint: async () => this.request.ssh,
        shell,
        onUpdate: () => this.updateNotice(device),
        onAction: () => {},
        logger: (message) => {
          if (!message.startsWith('device link up')) {
            this.linkFailures++
            this.firstError ??= message
          }
        },
      })
      this.links.push(link)
    }

    // Handshakes a few at a time, as agents that come up over time make them; a storm of thousands at once in one
    // load-generating process would measure that process's crypto, and its own timeouts, not the server.
    await inParallel(this.links.length, HANDSHAKES_IN_FLIGHT, async (index) => {
      this.links[index].start()
      await this.links[index].linked()
    })
    let fetched = 0
    await inParallel(this.request.devices.length, MAX_SOCKETS, async (index) => {
      if (await this.fetchTarget(this.request.devices[index])) fetched++
    })
    return {type: 'linked', linked: this.links.filter((link) => link.isLinked).length, fetched, linkFailures: this.linkFailures, firstError: this.firstError}
  }

  progress(): FromAgents {
    return {type: 'progress', notices: this.notices, changedFetches: this.changedFetches, errors: this.errors, firstError: this.firstError}
  }

  async unlink(): Promise<void> {
    await Promise.all(this.links.map((link) => link.stop()))
    this.client.close()
  }

  /** Fetches the device's target; true when it changed since the last fetch. */
  private async fetchTarget(device: SimulatedDevice): Promise<boolean> {
    const etag = etags.get(device.uuid)
    const answer = await this.client.request('GET', `/device/v3/${device.uuid}/state`, {token: device.key, headers: etag ? {'if-none-match': etag} : {}})
    if (answer.status === 200 && answer.etag) {
      etags.set(device.uuid, answer.etag)
      return true
    }

    if (answer.status !== 304) throw new Error(`state fetch answered ${answer.status}: ${answer.body.slice(0, 200)}`)
    return false
  }

  private updateNotice(device: SimulatedDevice): void {
    this.notices.push(Date.now())
    this.fetchTarget(device).then(
      (changed) => changed && this.changedFetches.push(Date.now()),
      (error: unknown) => {
        this.errors++
        this.firstError ??= (error as Error).message
      },
    )
  }
}

let polling: PollingFleet | undefined
let linked: LinkedFleet | undefined

process.on('message', (message: ToAgents) => {
  const answer = async (): Promise<FromAgents | undefined> => {
    switch (message.type) {
      case 'start': {
        polling = new PollingFleet(message)
        return undefined
      }

      case 'warmed': {
        return polling?.warmed()
      }

      case 'measure': {
        polling?.measure()
        return undefined
      }

      case 'stop': {
        const result = await polling?.stop()
        polling = undefined
        return result
      }

      case 'link': {
        linked = new LinkedFleet(message)
        return linked.link()
      }

      case 'progress': {
        return linked?.progress()
      }

      case 'unlink': {
        await linked?.unlink()
        return {type: 'unlinked'}
      }
    }
  }

  answer().then(
    (reply) => reply && send(reply),
    (error: unknown) => {
      process.stderr.write(`simulated agents: ${(error as Error).stack}\n`)
      process.exit(1)
    },
  )
})
