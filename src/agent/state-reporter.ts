import {readFile, statfs} from 'node:fs/promises'
import os from 'node:os'

import type {AppStateReport, DeviceStateReport, ServiceStatus, StateReport, UpdateStatus} from '../protocol/state-report.js'
import type {TargetDevice} from '../protocol/target-state.js'
import type {FleetClient} from '../sdk/client.js'
import {type ContainerStatus, type CurrentState, desiredAppsOf, hasImage, type Plan, type PlanOptions} from './reconciler.js'

export type DeviceFacts = Omit<DeviceStateReport, 'apps' | 'status'>

const MEBIBYTE = 1024 * 1024

async function osVersion(): Promise<string | undefined> {
  const text = await readFile('/etc/os-release', 'utf8').catch(() => '')
  const pretty = /^PRETTY_NAME="?(.*?)"?$/m.exec(text)
  return pretty?.[1]
}

/** What the agent can tell of the machine it runs on: addresses, OS, memory and the data dir's disk. */
export async function gatherDeviceFacts(options: {dataDir: string; agentVersion: string; apiPort?: number}): Promise<DeviceFacts> {
  const interfaces = Object.values(os.networkInterfaces()).flat().filter((entry) => entry && !entry.internal) as os.NetworkInterfaceInfo[]
  const ordered = [...interfaces.filter((entry) => entry.family === 'IPv4'), ...interfaces.filter((entry) => entry.family === 'IPv6')]
  const macAddresses = [...new Set(interfaces.map((entry) => entry.mac).filter((mac) => mac !== '00:00:00:00:00:00'))]
  const disk = await statfs(options.dataDir).catch(() => undefined)
  return {
    os_version: await osVersion(),
    supervisor_version: options.agentVersion,
    ip_address: ordered.map((entry) => entry.address).join(' ') || undefined,
    mac_address: macAddresses.join(' ') || undefined,
    ...(options.apiPort === undefined ? {} : {api_port: options.apiPort}),
    memory_total: Math.round(os.totalmem() / MEBIBYTE),
    memory_usage: Math.round((os.totalmem() - os.freemem()) / MEBIBYTE),
    ...(disk ? {storage_total: Math.round((disk.blocks * disk.bsize) / MEBIBYTE), storage_usage: Math.round(((disk.blocks - disk.bfree) * disk.bsize) / MEBIBYTE)} : {}),
  }
}

/** The device's facts, gathered again when older than `refreshMs` (default 5 min): they change slowly and cost a statfs. */
export class DeviceFactsCache {
  private facts: DeviceFacts = {}
  private gatheredAt?: number

  constructor(private readonly gather: () => Promise<DeviceFacts>, private readonly refreshMs = 5 * 60_000, private readonly now: () => number = Date.now) {}

  get current(): DeviceFacts {
    return this.facts
  }

  async refresh(): Promise<void> {
    if (this.gatheredAt !== undefined && this.now() - this.gatheredAt <= this.refreshMs) return
    this.facts = await this.gather()
    this.gatheredAt = this.now()
  }
}

const SERVICE_STATUS: Record<ContainerStatus, ServiceStatus> = {
  created: 'Installing',
  running: 'Running',
  paused: 'Running',
  restarting: 'exited',
  exited: 'exited',
  dead: 'Dead',
  removing: 'Stopping',
}

export interface StateReportInput {
  deviceUuid: string
  target?: TargetDevice
  current: CurrentState
  plan?: Plan
  planOptions: PlanOptions
  /** Percent done, by image, of downloads under way. */
  downloadProgress?: ReadonlyMap<string, number>
  /** Images whose download failed and waits to be tried again: their release's update is reported failed ('aborted'). */
  pullFailures?: ReadonlyMap<string, unknown>
  facts: DeviceFacts
}

/** The `PATCH /device/v3/state` body for what runs now against what the target asks. */
export function buildStateReport(input: StateReportInput): StateReport {
  const {current, plan} = input
  const apps: Record<string, AppStateReport> = {}
  let updating = false
  const desiredApps = input.target ? desiredAppsOf(input.target, input.planOptions) : []

  for (const app of desiredApps) {
    const containers = current.containers.filter((container) => container.appId === app.appId)
    const report: AppStateReport = {releases: {}}
    if (app.commit) {
      let downloading = false
      let pullFailed = false
      let converged = true
      // The engine cannot run one of the release's images: balena's word for a release a device will not run.
      let rejected = false
      const services: AppStateReport['releases'][string]['services'] = {}
      for (const service of app.services) {
        const installed = containers.find((container) => container.name === service.spec.name && container.configHash === service.configHash)
        if (installed) {
          services[service.serviceName] = {image: service.image, status: SERVICE_STATUS[installed.status], download_progress: null}
          if (installed.status === 'created' || installed.status === 'dead') converged = false
          continue
        }

        converged = false
        if (plan?.refused.some((refusal) => refusal.appId === app.appId && refusal.serviceName === service.serviceName)) {
          rejected = true
          services[service.serviceName] = {image: service.image, status: 'Dead', download_progress: null}
          continue
        }

        const fetched = hasImage(current, service.image)
        const failed = !fetched && (input.pullFailures?.has(service.image) ?? false)
        downloading ||= !fetched
        pullFailed ||= failed
        services[service.serviceName] = {
          image: service.image,
          status: fetched ? 'Installing' : 'Downloading',
          // No progress while a failed download waits: the device is not updating meanwhile.
          download_progress: fetched ? 100 : failed ? null : (input.downloadProgress?.get(service.image) ?? 0),
        }
      }

      const leftovers = containers.some((container) => container.commit !== app.commit || !app.services.some((service) => service.serviceName === container.serviceName))
      const waiting = plan?.waitingForLock.some((entry) => entry.appId === app.appId) ?? false
      const updateStatus: UpdateStatus = converged && !leftovers ? 'done' : pullFailed ? 'aborted' : downloading ? 'downloading' : rejected ? 'rejected' : waiting ? 'downloaded' : 'applying changes'
      updating ||= updateStatus !== 'done' && updateStatus !== 'aborted' && updateStatus !== 'rejected'
      report.releases[app.commit] = {update_status: updateStatus, services}
    }

    for (const container of containers.filter((candidate) => candidate.commit !== app.commit)) {
      report.releases[container.commit] ??= {update_status: 'done', services: {}}
      report.releases[container.commit].services[container.serviceName] = {image: container.image, status: SERVICE_STATUS[container.status], download_progress: null}
    }

    const upCommits = new Set(containers.filter((container) => container.status === 'running' || container.status === 'restarting').map((container) => container.commit))
    const older = [...upCommits].find((commit) => commit !== app.commit)
    const releaseUuid = older ?? (upCommits.has(app.commit ?? '') || report.releases[app.commit ?? '']?.update_status === 'done' ? app.commit : undefined)
    if (releaseUuid) report.release_uuid = releaseUuid
    apps[app.appUuid] = report
  }

  return {[input.deviceUuid]: {...input.facts, status: updating ? 'Updating' : 'Idle', apps}}
}

export interface StateReporterOptions {
  send: (report: StateReport) => Promise<void>
  /** At most one report this often, however often the state changes. */
  minIntervalMs?: number
  /** A report this often even when nothing changed, so the server knows the device is alive. */
  heartbeatMs?: number
  onError?: (error: unknown) => void
}

export function stateReportSender(client: FleetClient): (report: StateReport) => Promise<void> {
  return async (report) => {
    await client.request('PATCH', '/device/v3/state', {json: report})
  }
}

/** Sends the state report after changes, throttled, and as a heartbeat; a failed report is tried again later. */
export class StateReporter {
  private latest?: StateReport
  private lastSentJson?: string
  private lastSentAt = 0
  private timer?: NodeJS.Timeout
  private readonly heartbeat: NodeJS.Timeout
  private sending?: Promise<void>
  private failures = 0
  private stopped = false

  constructor(private readonly options: StateReporterOptions) {
    this.heartbeat = setInterval(() => {
      this.lastSentJson = undefined
      this.schedule()
    }, options.heartbeatMs ?? 5 * 60_000)
  }

  update(report: StateReport): void {
    this.latest = report
    this.schedule()
  }

  /** Resolves once the latest report has been sent (or the attempt failed). */
  async flush(): Promise<void> {
    await this.sending
    clearTimeout(this.timer)
    this.timer = undefined
    const report = this.latest
    const json = JSON.stringify(report)
    if (!report || json === this.lastSentJson) return
    this.sending = this.options.send(report).then(
      () => {
        this.lastSentJson = json
        this.lastSentAt = Date.now()
        this.failures = 0
      },
      (error: unknown) => {
        this.failures++
        this.options.onError?.(error)
        // After stop(), the last flush is the last try: a retry would keep a stopping agent alive while the server is gone.
        if (!this.stopped) this.timer = setTimeout(() => void this.flush(), Math.min(5 * 60_000, 1000 * 2 ** this.failures))
      },
    ).finally(() => {
      this.sending = undefined
    })
    return this.sending
  }

  stop(): void {
    this.stopped = true
    clearInterval(this.heartbeat)
    clearTimeout(this.timer)
    this.timer = undefined
  }

  private schedule(): void {
    if (this.stopped || this.timer || JSON.stringify(this.latest) === this.lastSentJson) return
    const wait = Math.max(0, this.lastSentAt + (this.options.minIntervalMs ?? 10_000) - Date.now())
    this.timer = setTimeout(() => void this.flush(), wait)
  }
}
