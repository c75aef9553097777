/**
 * The v3 target state a device fetches with `GET /device/v3/:uuid/state`: keyed by the device's uuid,
 * its apps keyed by app uuid, each app's release keyed by commit (`releases` absent when there is no target).
 */
export type TargetState = Record<string, TargetDevice>

export interface TargetDevice {
  name: string
  /** `BALENA_…` config variables: fleet's, then the device's over them. */
  config: Record<string, string>
  apps: Record<string, TargetApp>
}

export interface TargetApp {
  id: number
  name: string
  is_host: boolean
  class: 'fleet' | 'app' | 'block'
  releases?: Record<string, TargetRelease>
}

export interface TargetRelease {
  id: number
  services: Record<string, TargetService>
  /** Named volumes of the release's composition, by name. */
  volumes: Record<string, TargetVolume>
  networks: Record<string, unknown>
}

export interface TargetService {
  id: number
  image_id: number
  /** `<registry>/v2/<hash>@sha256:…` */
  image: string
  /** Already merged by the server: image, fleet, service, device, device-service variables. */
  environment: Record<string, string>
  labels: Record<string, string>
  composition: ServiceComposition
}

export interface TargetVolume {
  driver?: string
  driver_opts?: Record<string, string>
  labels?: Record<string, string>
}

/** The compose keys of a service, as the release's composition holds them. */
export interface ServiceComposition {
  command?: string | string[]
  entrypoint?: string | string[]
  environment?: Record<string, string> | string[]
  labels?: Record<string, string> | string[]
  network_mode?: string
  restart?: 'no' | 'always' | 'on-failure' | 'unless-stopped'
  volumes?: Array<string | {type?: string; source?: string; target: string; read_only?: boolean}>
  working_dir?: string
  user?: string
  privileged?: boolean
  tty?: boolean
  [key: string]: unknown
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The part of a target state answer for one device, checked enough that the agent can trust its shape. */
export function targetDeviceOf(body: unknown, uuid: string): TargetDevice {
  const device = isRecord(body) ? body[uuid] : undefined
  if (!isRecord(device) || !isRecord(device.apps)) throw new TypeError(`the target state has no device ${uuid} with apps`)
  for (const [appUuid, app] of Object.entries(device.apps)) {
    if (!isRecord(app) || typeof app.id !== 'number') throw new TypeError(`app ${appUuid} of the target state has no id`)
    if (app.releases === undefined) continue
    if (!isRecord(app.releases)) throw new TypeError(`app ${appUuid} of the target state has malformed releases`)
    for (const [commit, release] of Object.entries(app.releases)) {
      if (!isRecord(release) || !isRecord(release.services)) throw new TypeError(`release ${commit} of the target state has no services`)
      for (const [name, service] of Object.entries(release.services)) {
        if (!isRecord(service) || typeof service.image !== 'string' || typeof service.image_id !== 'number') {
          throw new TypeError(`service ${name} of release ${commit} has no image`)
        }
      }
    }
  }

  return {name: '', config: {}, ...device} as unknown as TargetDevice
}
