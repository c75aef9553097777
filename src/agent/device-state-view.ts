import type {V1App} from './local-api.js'
import type {ReconcileSnapshot} from './reconcile-loop.js'
import {desiredAppsOf, type PlanOptions} from './reconciler.js'

export interface DeviceStateViewOptions {
  snapshot(): ReconcileSnapshot
  planOptions(): PlanOptions
  /** Undefined until the device is registered. */
  deviceUuid(): string | undefined
  agentVersion: string
  apiPort(): number
  /** Images whose last download failed: the update is reported failed meanwhile. */
  pullFailureCount(): number
}

/** An error the local API answers with its status code. */
function httpError(statusCode: number, message: string): Error {
  return Object.assign(new Error(message), {statusCode})
}

/**
 * The device's state as the local supervisor API's endpoints describe it (balena's `/v1/device`,
 * `/v2/applications/state`, `/v2/state/status`, `/v1/apps/:appId`), from what the reconcile loop last saw.
 */
export class DeviceStateView {
  constructor(private readonly options: DeviceStateViewOptions) {}

  /** Updating until a round ended with no step left and no update waiting for its lock. */
  private get applied(): boolean {
    const {plan} = this.options.snapshot()
    return plan !== undefined && plan.steps.length === 0 && plan.waitingForLock.length === 0
  }

  private get runningCommit(): string | undefined {
    return [...this.options.snapshot().commitOf.values()][0]
  }

  /** `GET /v1/device` */
  device(): Record<string, unknown> {
    const {plan} = this.options.snapshot()
    const updating = !this.applied
    return {
      api_port: this.options.apiPort(),
      supervisor_version: this.options.agentVersion,
      uuid: this.options.deviceUuid(),
      commit: this.runningCommit,
      status: updating ? 'Updating' : 'Idle',
      update_pending: updating,
      update_downloaded: plan ? !plan.steps.some((step) => step.action === 'fetch') : false,
      update_failed: (plan?.refused.length ?? 0) > 0 || this.options.pullFailureCount() > 0,
      download_progress: null,
    }
  }

  /** `GET /v2/applications/state`: each app of the target by name, with its services' status. */
  applicationsState(): Record<string, unknown> {
    const {target, current} = this.options.snapshot()
    const result: Record<string, unknown> = {}
    if (!target || !this.options.deviceUuid()) return result
    for (const app of desiredAppsOf(target, this.options.planOptions())) {
      const services: Record<string, unknown> = {}
      for (const service of app.services) {
        const container = current?.containers.find((candidate) => candidate.name === service.spec.name)
        services[service.serviceName] = {status: container?.status ?? 'Downloading', releaseId: service.releaseId, downloadProgress: null}
      }

      result[app.name] = {appId: app.appId, commit: app.commit, services}
    }

    return result
  }

  /** `GET /v2/state/status` */
  stateStatus(): Record<string, unknown> {
    const {current} = this.options.snapshot()
    return {
      appState: this.applied ? 'applied' : 'applying',
      overallDownloadProgress: null,
      containers: (current?.containers ?? []).map((container) => ({
        status: container.status,
        serviceName: container.serviceName,
        appId: container.appId,
        imageId: container.imageId,
        serviceId: container.serviceId,
        containerId: container.id,
        commit: container.commit,
      })),
      release: this.runningCommit,
    }
  }

  /** `GET /v1/apps/:appId`: the app's one service; 404 for an app the device does not have, 400 for several services. */
  app(appId: number): V1App {
    const {target, current} = this.options.snapshot()
    const app = target ? desiredAppsOf(target, this.options.planOptions()).find((candidate) => candidate.appId === appId) : undefined
    if (!app) throw httpError(404, `app ${appId} is not on this device`)
    if (app.services.length !== 1) throw httpError(400, 'this endpoint serves single-container apps only: use the v2 API')
    const [service] = app.services
    const container = current?.containers.find((candidate) => candidate.appId === appId && candidate.serviceName === service.serviceName)
    return {appId, commit: app.commit, containerId: container?.id, env: service.spec.environment, imageId: service.imageId, releaseId: service.releaseId, serviceName: service.serviceName}
  }

  /** `GET /v2/device/name` */
  deviceName(): string {
    return this.options.snapshot().target?.name ?? ''
  }

  /** The apps the target has, by id (their volumes are kept by `/v2/cleanup-volumes`). */
  wantedAppIds(): Set<number> {
    const {target} = this.options.snapshot()
    return new Set(target ? desiredAppsOf(target, this.options.planOptions()).map((app) => app.appId) : [])
  }
}
