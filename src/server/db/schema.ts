import type {Generated} from 'kysely'

/**
 * The tables the server's own code (auth, bootstrap, registration) queries with typed Kysely queries.
 * Pine requests reach every table through the resource model in odata/model.ts instead.
 * Dates are ISO strings, booleans 0/1 and JSON text in SQLite; values go through db/values.ts on the way in and out.
 */
export interface ActorTable {
  id: Generated<number>
  kind: 'user' | 'application' | 'device'
}

export interface OrganizationTable {
  id: Generated<number>
  created_at: string
  name: string
  handle: string
}

export interface UserTable {
  id: Generated<number>
  created_at: string
  username: string
  email: string
  password_hash: string | null
  jwt_secret: string
  actor: number
}

export interface OrganizationMembershipTable {
  id: Generated<number>
  created_at: string
  user: number
  is_member_of__organization: number
}

export type ApiKeyKind = 'named-user-api-key' | 'provisioning-api-key' | 'device-api-key'

export interface ApiKeyTable {
  id: Generated<number>
  created_at: string
  key_hash: string
  kind: ApiKeyKind
  name: string | null
  description: string | null
  expiry_date: string | null
  is_of__actor: number
}

export interface ApplicationTable {
  id: Generated<number>
  created_at: string
  app_name: string
  slug: string
  uuid: string
  is_for__device_type: number
  organization: number
  is_of__class: string
  should_track_latest_release: number
  should_be_running__release: number | null
  is_host: number
  is_archived: number
  is_public: number
  actor: number
  /** Always the one `microservices` type (a default of the column). */
  application_type: Generated<number>
}

/** balena's fleet types; flotilla has one, `microservices`, which balena-cli reads before deploy, build and rename. */
export interface ApplicationTypeTable {
  id: Generated<number>
  slug: string
  name: string
  description: string | null
  supports_multicontainer: number
  supports_web_url: number
  is_legacy: number
}

export interface DeviceTable {
  id: Generated<number>
  created_at: string
  uuid: string
  device_name: string
  is_of__device_type: number
  belongs_to__application: number
  actor: number
  is_online: number
  api_heartbeat_state: string
  is_undervolted: number
  is_web_accessible: number
  os_version: string | null
  os_variant: string | null
  supervisor_version: string | null
  mac_address: string | null
  last_connectivity_event: string | null
  status: string | null
  ip_address: string | null
  api_port: number | null
  memory_usage: number | null
  memory_total: number | null
  storage_usage: number | null
  storage_total: number | null
  cpu_usage: number | null
  cpu_temp: number | null
  cpu_id: string | null
  storage_block_device: string | null
  is_running__release: number | null
  is_pinned_on__release: number | null
  update_status: string | null
  download_progress: number | null
  /** Defaults to true. */
  is_active: Generated<number>
  /** Defaults to false; the device link sets it. */
  is_connected_to_vpn: Generated<number>
}

export interface DeviceTypeTable {
  id: Generated<number>
  slug: string
  name: string
  is_of__cpu_architecture: number
  contract: string | null
}

export interface CpuArchitectureTable {
  id: Generated<number>
  slug: string
}

export interface DeviceTypeAliasTable {
  id: Generated<number>
  device_type: number
  is_referenced_by__alias: string
}

export interface ReleaseTable {
  id: Generated<number>
  created_at: string
  belongs_to__application: number
  commit: string
  composition: string | null
  status: string
  source: string
  build_log: string | null
  start_timestamp: string | null
  end_timestamp: string | null
  is_final: number
  semver: string
  revision: number | null
  raw_version: string | null
  variant: string | null
  phase: string | null
  is_invalidated: number
  note: string | null
  known_issue_list: string | null
  is_created_by__user: number | null
  /** Defaults to true. */
  is_passing_tests: Generated<number>
}

export interface ServiceTable {
  id: Generated<number>
  created_at: string
  application: number
  service_name: string
}

export interface ImageTable {
  id: Generated<number>
  created_at: string
  is_a_build_of__service: number
  is_stored_at__image_location: string
  content_hash: string | null
  image_size: number | null
  status: string
  start_timestamp: string | null
  end_timestamp: string | null
  push_timestamp: string | null
  dockerfile: string | null
  project_type: string | null
  error_message: string | null
  build_log: string | null
  /** [flotilla] The image's platform, `linux/arm64`; null when unknown. */
  architecture: string | null
  /** [flotilla] SHA-256 of what decided a build (context, Dockerfile, args, platform, bases): an unchanged re-push reuses the image. */
  context_digest: string | null
}

export interface ImageIsPartOfReleaseTable {
  id: Generated<number>
  created_at: string
  image: number
  is_part_of__release: number
}

export interface ImageInstallTable {
  id: Generated<number>
  created_at: string
  device: number
  installs__image: number
  install_date: string | null
  status: string
  download_progress: number | null
  is_provided_by__release: number | null
}

/** A period in which a device's tracked fields held, as balena's device_history records them. */
export interface DeviceHistoryTable {
  id: Generated<number>
  created_at: string
  /** Null while the period lasts. */
  end_timestamp: string | null
  is_created_by__actor: number | null
  is_ended_by__actor: number | null
  /** Null once the device is deleted; `uuid` still names it. */
  tracks__device: number | null
  tracks__actor: number | null
  uuid: string
  belongs_to__application: number | null
  is_of__device_type: number | null
  is_active: number
  is_running__release: number | null
  /** The release the device is pinned to, as balena's device.should_be_running__release column. */
  should_be_running__release: number | null
  os_version: string | null
  os_variant: string | null
  supervisor_version: string | null
}

export interface ReleaseAssetTable {
  id: Generated<number>
  created_at: string
  release: number
  asset_key: string
  /** JSON `{href, filename, content_type, size}`, or null before a file is uploaded. */
  asset: string | null
}

/** A secret every instance of the server shares (db/server-secrets.ts); not an API resource. */
export interface ServerSecretTable {
  name: string
  value: string
}

/** The file of a release asset. */
export interface ReleaseAssetContentTable {
  asset: number
  content: Uint8Array | ArrayBuffer
}

export interface UserHasPublicKeyTable {
  id: Generated<number>
  created_at: string
  user: number
  title: string
  /** An OpenSSH public key line. */
  public_key: string
}

/** One device × one service of its fleet: what device-service variables hang off (db/service-installs.ts keeps them). */
export interface ServiceInstallTable {
  id: Generated<number>
  created_at: string
  device: number
  installs__service: number
}

/** A `{<parent>, name, value}` variable row; the parent column is named after the table's owner. */
interface VariableColumns {
  id: Generated<number>
  created_at: string
  name: string
  value: string
}

/** One stored device log line; `id` is the cursor clients resume from. */
export interface DeviceLogTable {
  id: number
  device: number
  created_at: number
  timestamp: number
  message: string
  is_system: number
  is_std_err: number
  service_id: number | null
}

/** [flotilla] A server process sharing this database; dead once its last_seen_at is older than the registry's timeout. */
export interface ServerInstanceTable {
  /** Random, made at each start. */
  id: string
  /** Where the other instances open internal channels to it (`--internal-url`). */
  internal_url: string
  started_at: string
  last_seen_at: string
}

/** [flotilla] The instance holding a device's link, while it holds it. */
export interface DeviceLinkTable {
  device: number
  instance: string
  linked_at: string
}

/** The server instance running a build of our builder, while it runs. */
export interface ReleaseBuildTable {
  release: number
  instance: string
}

/** [flotilla] The last numbered log batch (`X-Flotilla-Log-Batch`) stored of each device: a batch sent again is stored once. */
export interface DeviceLogBatchTable {
  device: number
  journal: string
  number: number
}

/** [flotilla] Device actions waiting for a device that has no link, until its next collect (whichever instance it asks). */
export interface DeviceActionTable {
  id: Generated<number>
  device: number
  /** The DeviceAction as JSON. */
  action: string
  created_at: string
}

/** A failed login (auth/rate-limit.ts), by the SHA-256 of its IP and user name, at a time in ms. */
export interface LoginFailureTable {
  id: Generated<number>
  key_hash: string
  at: number
}

export interface Database {
  actor: ActorTable
  organization: OrganizationTable
  user: UserTable
  organization_membership: OrganizationMembershipTable
  user__has__public_key: UserHasPublicKeyTable
  api_key: ApiKeyTable
  application: ApplicationTable
  device: DeviceTable
  device_type: DeviceTypeTable
  cpu_architecture: CpuArchitectureTable
  device_type_alias: DeviceTypeAliasTable
  application_type: ApplicationTypeTable
  release: ReleaseTable
  service: ServiceTable
  image: ImageTable
  image__is_part_of__release: ImageIsPartOfReleaseTable
  image_install: ImageInstallTable
  device_history: DeviceHistoryTable
  release_asset: ReleaseAssetTable
  application_environment_variable: VariableColumns & {application: number}
  application_config_variable: VariableColumns & {application: number}
  device_environment_variable: VariableColumns & {device: number}
  device_config_variable: VariableColumns & {device: number}
  service_install: ServiceInstallTable
  service_environment_variable: VariableColumns & {service: number}
  device_service_environment_variable: VariableColumns & {service_install: number}
  device_log: DeviceLogTable
  server_secret: ServerSecretTable
  server_instance: ServerInstanceTable
  device_link: DeviceLinkTable
  release_build: ReleaseBuildTable
  device_log_batch: DeviceLogBatchTable
  device_action: DeviceActionTable
  login_failure: LoginFailureTable
  release_asset_content: ReleaseAssetContentTable
}
