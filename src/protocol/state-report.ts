/** The state a device reports with `PATCH /device/v3/state`, keyed by its uuid. */
export type StateReport = Record<string, DeviceStateReport>

export interface DeviceStateReport {
  status?: string
  os_version?: string
  os_variant?: string
  supervisor_version?: string
  /** Space-separated. */
  ip_address?: string
  mac_address?: string
  api_port?: number
  api_secret?: string
  /** MiB */
  memory_usage?: number
  memory_total?: number
  storage_usage?: number
  storage_total?: number
  cpu_usage?: number
  cpu_temp?: number
  apps?: Record<string, AppStateReport>
}

export interface AppStateReport {
  /** The commit running now; sets the device's `is_running__release`. */
  release_uuid?: string
  releases: Record<string, ReleaseStateReport>
}

export type UpdateStatus = 'downloading' | 'downloaded' | 'applying changes' | 'done' | 'aborted' | 'rejected'

export interface ReleaseStateReport {
  update_status: UpdateStatus
  services: Record<string, ServiceStateReport>
}

export type ServiceStatus = 'Downloading' | 'Installing' | 'Running' | 'Stopping' | 'exited' | 'Dead'

export interface ServiceStateReport {
  image: string
  status: ServiceStatus
  download_progress: number | null
}
