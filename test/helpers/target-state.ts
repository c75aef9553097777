import type {TargetDevice, TargetService, TargetVolume} from '../../src/protocol/target-state.js'

/** The target state of a test device running one release of one fleet, as the server would send it. */
export function deviceTarget(
  app: {uuid: string; id: number},
  release: {commit: string; id: number; services: Record<string, TargetService>; volumes?: Record<string, TargetVolume>},
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
        releases: {[release.commit]: {id: release.id, services: release.services, volumes: release.volumes ?? {}, networks: {}}},
      },
    },
  }
}
