import {type CurrentContainer, desiredAppsOf, type PlanOptions} from '../../src/agent/reconciler.js'
import type {TargetDevice, TargetService, TargetVolume} from '../../src/protocol/target-state.js'

/** The target state of a test device running one release of one fleet, as the server would send it. */
export function deviceTarget(
  app: {uuid: string; id: number},
  release: {commit: string; id: number; services: Record<string, TargetService>; volumes?: Record<string, TargetVolume>; networks?: Record<string, unknown>},
): TargetDevice {
  return {
    name: 'test-device',
    config: {},
    apps: {
      [app.uuid]: {
        id: app.id,
        name: 'testfleet',
        is_host: false,
        class: 'fleet',
        releases: {[release.commit]: {id: release.id, services: release.services, volumes: release.volumes ?? {}, networks: release.networks ?? {}}},
      },
    },
  }
}

/** The containers the agent would have created for a target, in a given status, as it reads them back from the engine. */
export function installedFrom(device: TargetDevice, options: PlanOptions, status: CurrentContainer['status'] = 'running'): CurrentContainer[] {
  return desiredAppsOf(device, options).flatMap((app) =>
    app.services.map((desired) => ({
      id: `id-${desired.spec.name}`,
      name: desired.spec.name,
      appId: desired.appId,
      appUuid: desired.appUuid,
      serviceName: desired.serviceName,
      serviceId: desired.serviceId,
      imageId: desired.imageId,
      releaseId: desired.releaseId,
      commit: desired.commit,
      image: desired.image,
      configHash: desired.configHash,
      status,
    })),
  )
}
