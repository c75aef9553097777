import {type CreateTableBuilder, type Kysely, type Migration, type MigrationProvider, sql} from 'kysely'

import {CPU_ARCHITECTURES, DEVICE_TYPE_CATALOGUE} from './device-types.js'
import {COLUMN_TYPES, dialectOf} from './dialect.js'

/* eslint-disable @typescript-eslint/no-explicit-any -- migrations describe tables that the typed schema names later */
type Table = CreateTableBuilder<string, any>

/** The column types of the database a migration runs on (db/dialect.ts). */
const typesOf = (db: Kysely<any>) => COLUMN_TYPES[dialectOf(db)]

/** An id the database assigns: SQLite's AUTOINCREMENT and PostgreSQL's identity both never reuse one. */
function withId(db: Kysely<any>, table: Table): Table {
  if (dialectOf(db) === 'postgres') return table.addColumn('id', 'integer', (column) => column.primaryKey().generatedByDefaultAsIdentity())
  return table.addColumn('id', 'integer', (column) => column.primaryKey().autoIncrement())
}

function withCreatedAt(db: Kysely<any>, table: Table): Table {
  return table.addColumn('created_at', typesOf(db).date, (column) => column.notNull())
}

function refersTo(target: string, onDelete: 'cascade' | 'set null' | 'restrict' = 'cascade') {
  return (column: any) => column.references(`${target}.id`).onDelete(onDelete)
}

async function createKeyValueTable(db: Kysely<any>, name: string, parent: string, keyColumn: string): Promise<void> {
  const types = typesOf(db)
  await withCreatedAt(db, withId(db, db.schema.createTable(name)))
    .addColumn(parent, 'integer', (column) => refersTo(parent)(column).notNull())
    .addColumn(keyColumn, types.text, (column) => column.notNull())
    .addColumn('value', types.text, (column) => column.notNull())
    .addUniqueConstraint(`${name}_${parent}_${keyColumn}_unique`, [parent, keyColumn])
    .execute()
}

const initialSchema: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await withId(db, db.schema.createTable('actor')).addColumn('kind', types.text, (column) => column.notNull()).execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('organization')))
      .addColumn('name', types.text, (column) => column.notNull())
      .addColumn('handle', types.text, (column) => column.notNull().unique())
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('user')))
      .addColumn('username', types.text, (column) => column.notNull().unique())
      .addColumn('email', types.text, (column) => column.notNull().unique())
      .addColumn('password_hash', types.text)
      .addColumn('jwt_secret', types.text, (column) => column.notNull())
      .addColumn('actor', 'integer', (column) => refersTo('actor', 'restrict')(column).notNull().unique())
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('organization_membership')))
      .addColumn('user', 'integer', (column) => refersTo('user')(column).notNull())
      .addColumn('is_member_of__organization', 'integer', (column) => refersTo('organization')(column).notNull())
      .addUniqueConstraint('organization_membership_unique', ['user', 'is_member_of__organization'])
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('user__has__public_key')))
      .addColumn('user', 'integer', (column) => refersTo('user')(column).notNull())
      .addColumn('title', types.text, (column) => column.notNull())
      .addColumn('public_key', types.text, (column) => column.notNull())
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('api_key')))
      .addColumn('key_hash', types.text, (column) => column.notNull().unique())
      .addColumn('kind', types.text, (column) => column.notNull())
      .addColumn('name', types.text)
      .addColumn('description', types.text)
      .addColumn('expiry_date', types.date)
      .addColumn('is_of__actor', 'integer', (column) => refersTo('actor')(column).notNull())
      .execute()
    await withId(db, db.schema.createTable('cpu_architecture')).addColumn('slug', types.text, (column) => column.notNull().unique()).execute()
    await withId(db, db.schema.createTable('device_type'))
      .addColumn('slug', types.text, (column) => column.notNull().unique())
      .addColumn('name', types.text, (column) => column.notNull())
      .addColumn('is_of__cpu_architecture', 'integer', (column) => refersTo('cpu_architecture', 'restrict')(column).notNull())
      .addColumn('contract', types.json)
      .execute()
    await withId(db, db.schema.createTable('device_type_alias'))
      .addColumn('device_type', 'integer', (column) => refersTo('device_type')(column).notNull())
      .addColumn('is_referenced_by__alias', types.text, (column) => column.notNull().unique())
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('application')))
      .addColumn('app_name', types.text, (column) => column.notNull())
      .addColumn('slug', types.text, (column) => column.notNull().unique())
      .addColumn('uuid', types.text, (column) => column.notNull().unique())
      .addColumn('is_for__device_type', 'integer', (column) => refersTo('device_type', 'restrict')(column).notNull())
      .addColumn('organization', 'integer', (column) => refersTo('organization')(column).notNull())
      .addColumn('is_of__class', types.text, (column) => column.notNull())
      .addColumn('should_track_latest_release', types.boolean, (column) => column.notNull())
      // SQLite takes a reference to a table made later; PostgreSQL gets it once the table exists (below).
      .addColumn('should_be_running__release', 'integer', dialectOf(db) === 'sqlite' ? refersTo('release', 'set null') : undefined)
      .addColumn('is_host', types.boolean, (column) => column.notNull())
      .addColumn('is_archived', types.boolean, (column) => column.notNull())
      .addColumn('is_public', types.boolean, (column) => column.notNull())
      .addColumn('actor', 'integer', (column) => refersTo('actor', 'restrict')(column).notNull().unique())
      .addUniqueConstraint('application_organization_app_name_unique', ['organization', 'app_name'])
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('release')))
      .addColumn('belongs_to__application', 'integer', (column) => refersTo('application')(column).notNull())
      .addColumn('commit', types.text, (column) => column.notNull())
      .addColumn('composition', types.json)
      .addColumn('status', types.text, (column) => column.notNull())
      .addColumn('source', types.text, (column) => column.notNull())
      .addColumn('build_log', types.text)
      .addColumn('start_timestamp', types.date)
      .addColumn('end_timestamp', types.date)
      .addColumn('is_final', types.boolean, (column) => column.notNull())
      .addColumn('semver', types.text, (column) => column.notNull())
      .addColumn('revision', 'integer')
      .addColumn('raw_version', types.text)
      .addColumn('variant', types.text)
      .addColumn('phase', types.text)
      .addColumn('is_invalidated', types.boolean, (column) => column.notNull())
      .addColumn('note', types.text)
      .addColumn('is_created_by__user', 'integer', refersTo('user', 'set null'))
      .addUniqueConstraint('release_application_commit_unique', ['belongs_to__application', 'commit'])
      .execute()
    if (dialectOf(db) === 'postgres') {
      await db.schema
        .alterTable('application')
        .addForeignKeyConstraint('application_should_be_running__release_fkey', ['should_be_running__release'], 'release', ['id'], (constraint) => constraint.onDelete('set null'))
        .execute()
    }

    await withCreatedAt(db, withId(db, db.schema.createTable('device')))
      .addColumn('uuid', types.text, (column) => column.notNull().unique())
      .addColumn('device_name', types.text, (column) => column.notNull())
      .addColumn('note', types.text)
      .addColumn('is_of__device_type', 'integer', (column) => refersTo('device_type', 'restrict')(column).notNull())
      .addColumn('belongs_to__application', 'integer', (column) => refersTo('application')(column).notNull())
      .addColumn('belongs_to__user', 'integer', refersTo('user', 'set null'))
      .addColumn('actor', 'integer', (column) => refersTo('actor', 'restrict')(column).notNull().unique())
      .addColumn('is_online', types.boolean, (column) => column.notNull())
      .addColumn('last_connectivity_event', types.date)
      .addColumn('api_heartbeat_state', types.text, (column) => column.notNull())
      .addColumn('status', types.text)
      .addColumn('os_version', types.text)
      .addColumn('os_variant', types.text)
      .addColumn('supervisor_version', types.text)
      .addColumn('ip_address', types.text)
      .addColumn('public_address', types.text)
      .addColumn('mac_address', types.text)
      .addColumn('api_port', 'integer')
      .addColumn('memory_usage', types.bigint)
      .addColumn('memory_total', types.bigint)
      .addColumn('storage_usage', types.bigint)
      .addColumn('storage_total', types.bigint)
      .addColumn('cpu_usage', 'integer')
      .addColumn('cpu_temp', 'integer')
      .addColumn('is_undervolted', types.boolean, (column) => column.notNull())
      .addColumn('download_progress', 'integer')
      .addColumn('is_running__release', 'integer', refersTo('release', 'set null'))
      .addColumn('is_pinned_on__release', 'integer', refersTo('release', 'set null'))
      .addColumn('update_status', types.text)
      .addColumn('overall_status', types.text)
      .addColumn('is_web_accessible', types.boolean, (column) => column.notNull())
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('service')))
      .addColumn('application', 'integer', (column) => refersTo('application')(column).notNull())
      .addColumn('service_name', types.text, (column) => column.notNull())
      .addUniqueConstraint('service_application_name_unique', ['application', 'service_name'])
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('image')))
      .addColumn('is_a_build_of__service', 'integer', (column) => refersTo('service')(column).notNull())
      .addColumn('is_stored_at__image_location', types.text, (column) => column.notNull().unique())
      .addColumn('content_hash', types.text)
      .addColumn('image_size', types.bigint)
      .addColumn('status', types.text, (column) => column.notNull())
      .addColumn('start_timestamp', types.date)
      .addColumn('end_timestamp', types.date)
      .addColumn('push_timestamp', types.date)
      .addColumn('dockerfile', types.text)
      .addColumn('project_type', types.text)
      .addColumn('error_message', types.text)
      .addColumn('build_log', types.text)
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('image__is_part_of__release')))
      .addColumn('image', 'integer', (column) => refersTo('image')(column).notNull())
      .addColumn('is_part_of__release', 'integer', (column) => refersTo('release')(column).notNull())
      .addUniqueConstraint('image__is_part_of__release_unique', ['image', 'is_part_of__release'])
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('image_install')))
      .addColumn('device', 'integer', (column) => refersTo('device')(column).notNull())
      .addColumn('installs__image', 'integer', (column) => refersTo('image')(column).notNull())
      .addColumn('install_date', types.date)
      .addColumn('status', types.text, (column) => column.notNull())
      .addColumn('download_progress', 'integer')
      .addColumn('is_provided_by__release', 'integer', refersTo('release'))
      .addUniqueConstraint('image_install_unique', ['device', 'installs__image'])
      .execute()
    await createKeyValueTable(db, 'application_environment_variable', 'application', 'name')
    await createKeyValueTable(db, 'application_config_variable', 'application', 'name')
    await createKeyValueTable(db, 'device_environment_variable', 'device', 'name')
    await createKeyValueTable(db, 'device_config_variable', 'device', 'name')
    await createKeyValueTable(db, 'application_tag', 'application', 'tag_key')
    await createKeyValueTable(db, 'device_tag', 'device', 'tag_key')
    await createKeyValueTable(db, 'release_tag', 'release', 'tag_key')
    for (const [table, column] of [
      ['device', 'belongs_to__application'],
      ['release', 'belongs_to__application'],
      ['application', 'organization'],
      ['organization_membership', 'is_member_of__organization'],
      ['api_key', 'is_of__actor'],
      ['image', 'is_a_build_of__service'],
      ['image__is_part_of__release', 'is_part_of__release'],
      ['user__has__public_key', 'user'],
    ]) {
      await db.schema.createIndex(`${table}_${column}_index`).on(table).column(column).execute()
    }
  },
}

const deviceTypeCatalogue: Migration = {
  async up(db: Kysely<any>) {
    for (const slug of CPU_ARCHITECTURES) await db.insertInto('cpu_architecture').values({slug}).execute()
    for (const entry of DEVICE_TYPE_CATALOGUE) {
      const architecture = await db.selectFrom('cpu_architecture').select('id').where('slug', '=', entry.arch).executeTakeFirstOrThrow()
      const contract = {slug: entry.slug, name: entry.name, type: 'hw.device-type', data: {arch: entry.arch, yocto: entry.yocto}}
      const inserted = await db
        .insertInto('device_type')
        .values({slug: entry.slug, name: entry.name, is_of__cpu_architecture: architecture.id, contract: JSON.stringify(contract)})
        .returning('id')
        .executeTakeFirstOrThrow()
      for (const alias of entry.aliases) await db.insertInto('device_type_alias').values({device_type: inserted.id, is_referenced_by__alias: alias}).execute()
    }
  },
}

/** Device log lines, a bounded number a device: the ids are assigned by the server so live subscribers get them before the write. */
const deviceLogs: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await db.schema
      .createTable('device_log')
      .addColumn('id', types.bigint, (column) => column.primaryKey())
      .addColumn('device', 'integer', (column) => refersTo('device')(column).notNull())
      .addColumn('created_at', types.bigint, (column) => column.notNull())
      .addColumn('timestamp', types.bigint, (column) => column.notNull())
      .addColumn('message', types.text, (column) => column.notNull())
      .addColumn('is_system', types.boolean, (column) => column.notNull())
      .addColumn('is_std_err', types.boolean, (column) => column.notNull())
      .addColumn('service_id', 'integer')
      .execute()
    await db.schema.createIndex('device_log_device_id_index').on('device_log').columns(['device', 'id']).execute()
  },
}

/**
 * Service variables as balena has them: `service_environment_variable` (a fleet-wide variable of one service) and
 * `device_service_environment_variable`, which hangs off a `service_install` — one per device × service of its
 * fleet, kept by the server (db/service-installs.ts). Existing devices and services get their installs here.
 */
const serviceVariables: Migration = {
  async up(db: Kysely<any>) {
    await withCreatedAt(db, withId(db, db.schema.createTable('service_install')))
      .addColumn('device', 'integer', (column) => refersTo('device')(column).notNull())
      .addColumn('installs__service', 'integer', (column) => refersTo('service')(column).notNull())
      .addUniqueConstraint('service_install_device_service_unique', ['device', 'installs__service'])
      .execute()
    await db.schema.createIndex('service_install_installs__service_index').on('service_install').column('installs__service').execute()
    await createKeyValueTable(db, 'service_environment_variable', 'service', 'name')
    await createKeyValueTable(db, 'device_service_environment_variable', 'service_install', 'name')
    await db
      .insertInto('service_install')
      .columns(['created_at', 'device', 'installs__service'])
      .expression(
        db
          .selectFrom('device')
          .innerJoin('service', 'service.application', 'device.belongs_to__application')
          .select([sql<string>`${new Date().toISOString()}`.as('created_at'), 'device.id as device', 'service.id as installs__service']),
      )
      .execute()
  },
}

/**
 * Every device type is an alias of itself, as on balenaCloud: balena-sdk finds a device type by slug only through
 * `device_type_alias/any(dta:dta/is_referenced_by__alias eq '<slug>')` (balena-cli's `fleet create --type`).
 */
const deviceTypeSelfAliases: Migration = {
  async up(db: Kysely<any>) {
    await db
      .insertInto('device_type_alias')
      .columns(['device_type', 'is_referenced_by__alias'])
      .expression(
        db
          .selectFrom('device_type')
          .select(['device_type.id as device_type', 'device_type.slug as is_referenced_by__alias'])
          .where((eb) => eb.not(eb.exists(eb.selectFrom('device_type_alias').select('device_type_alias.id').whereRef('device_type_alias.is_referenced_by__alias', '=', 'device_type.slug')))),
      )
      .execute()
  },
}

/**
 * Fields of balena's v7 model that balena-cli selects by name: a device's boot disk and CPU serial (`balena device
 * <uuid>`), as a supervisor reports them, and a release's known issues (`balena os versions`).
 */
const balenaCliFields: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await db.schema.alterTable('device').addColumn('storage_block_device', types.text).execute()
    await db.schema.alterTable('device').addColumn('cpu_id', types.text).execute()
    await db.schema.alterTable('release').addColumn('known_issue_list', types.text).execute()
  },
}

/** balena's `application_type`, with the one type every flotilla fleet is of: balena-cli expands it before deploy, build and rename. */
const applicationTypes: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await withId(db, db.schema.createTable('application_type'))
      .addColumn('slug', types.text, (column) => column.notNull().unique())
      .addColumn('name', types.text, (column) => column.notNull())
      .addColumn('description', types.text)
      .addColumn('supports_multicontainer', types.boolean, (column) => column.notNull())
      .addColumn('supports_web_url', types.boolean, (column) => column.notNull())
      .addColumn('is_legacy', types.boolean, (column) => column.notNull())
      .execute()
    await db
      .insertInto('application_type')
      .values({id: 1, slug: 'microservices', name: 'Microservices', description: 'Fleets of one or more services', supports_multicontainer: 1, supports_web_url: 1, is_legacy: 0})
      .execute()
    // No REFERENCES: SQLite cannot add a column with both a foreign key and a non-null default.
    await db.schema.alterTable('application').addColumn('application_type', 'integer', (column) => column.notNull().defaultTo(1)).execute()
  },
}

/**
 * Fields balena-cli and balena-sdk read and write: whether a device is active (`device deactivate`), whether its
 * link to the server is up (balena's `is_connected_to_vpn`; the device link stands in for the VPN), and whether
 * a release passed its tests (`fleet track-latest` looks for the newest such release).
 */
const balenaSdkFields: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await db.schema.alterTable('device').addColumn('is_active', types.boolean, (column) => column.notNull().defaultTo(1)).execute()
    await db.schema.alterTable('device').addColumn('is_connected_to_vpn', types.boolean, (column) => column.notNull().defaultTo(0)).execute()
    await db.schema.alterTable('release').addColumn('is_passing_tests', types.boolean, (column) => column.notNull().defaultTo(1)).execute()
  },
}

/**
 * The platform each image was made for (`linux/arm64`, `linux/arm/v7`), as the engine reported it once the image
 * was built or pulled: a flotilla field (balena's image has none), null for images made before or by `deploy`.
 */
const imageArchitecture: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await db.schema.alterTable('image').addColumn('architecture', types.text).execute()
  },
}

/**
 * balena's device_history: the server appends a row whenever a device's fleet, pin, running release, OS or agent
 * version or activity changes, and ends the previous one. The fleet, device type and releases are plain ids, so a
 * deleted fleet or release leaves the history as it was; a deleted device leaves its rows with its uuid.
 */
const deviceHistory: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await withCreatedAt(db, withId(db, db.schema.createTable('device_history')))
      .addColumn('end_timestamp', types.date)
      .addColumn('is_created_by__actor', 'integer')
      .addColumn('is_ended_by__actor', 'integer')
      .addColumn('tracks__device', 'integer', refersTo('device', 'set null'))
      .addColumn('tracks__actor', 'integer')
      .addColumn('uuid', types.text, (column) => column.notNull())
      .addColumn('belongs_to__application', 'integer')
      .addColumn('is_of__device_type', 'integer')
      .addColumn('is_active', types.boolean, (column) => column.notNull())
      .addColumn('is_running__release', 'integer')
      .addColumn('should_be_running__release', 'integer')
      .addColumn('os_version', types.text)
      .addColumn('os_variant', types.text)
      .addColumn('supervisor_version', types.text)
      .execute()
    await db.schema.createIndex('device_history_tracks_device').on('device_history').columns(['tracks__device', 'end_timestamp']).execute()
    await db.schema.createIndex('device_history_application').on('device_history').column('belongs_to__application').execute()
  },
}

/**
 * balena's release_asset: a file attached to a release under a key. The file lives in the data dir under the row's
 * id (routes/release-assets.ts); `asset` holds what clients read of it ({href, filename, content_type, size}).
 */
const releaseAssets: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await withCreatedAt(db, withId(db, db.schema.createTable('release_asset')))
      .addColumn('release', 'integer', (column) => refersTo('release')(column).notNull())
      .addColumn('asset_key', types.text, (column) => column.notNull())
      .addColumn('asset', types.json)
      .addUniqueConstraint('release_asset_release_asset_key_unique', ['release', 'asset_key'])
      .execute()
  },
}

/**
 * What decided each built image (its context's contents, Dockerfile, build args, platform and base images), as a
 * SHA-256: a flotilla field, so that a push of an unchanged project reuses the fleet's image instead of building it
 * again. Null for images pulled, deployed or made before.
 */
const imageContextDigest: Migration = {
  async up(db: Kysely<any>) {
    await db.schema.alterTable('image').addColumn('context_digest', 'text').execute()
    await db.schema.createIndex('image_context_digest').on('image').column('context_digest').execute()
  },
}

/**
 * The server's own secrets (the session signing secret, the SSH host key, the registry token key), which every
 * instance on one database must share; never exposed through the API (odata/model.ts does not name the table).
 */
const serverSecrets: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await db.schema
      .createTable('server_secret')
      .addColumn('name', types.text, (column) => column.primaryKey())
      .addColumn('value', types.text, (column) => column.notNull())
      .execute()
  },
}

/**
 * [flotilla] Several servers on one database: the instances alive now (a random id each start, the address the
 * others reach it at, when it last said it was alive) and which instance holds each device's link, so a session
 * arriving at one instance is routed to the one the device is linked to (gateway/instance-registry.ts). A link
 * row goes with its instance and with its device.
 */
const serverInstances: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await db.schema
      .createTable('server_instance')
      .addColumn('id', types.text, (column) => column.primaryKey())
      .addColumn('internal_url', types.text, (column) => column.notNull())
      .addColumn('started_at', types.date, (column) => column.notNull())
      .addColumn('last_seen_at', types.date, (column) => column.notNull())
      .execute()
    await db.schema
      .createTable('device_link')
      .addColumn('device', 'integer', (column) => refersTo('device')(column).primaryKey())
      .addColumn('instance', types.text, (column) => column.notNull().references('server_instance.id').onDelete('cascade'))
      .addColumn('linked_at', types.date, (column) => column.notNull())
      .execute()
    await db.schema.createIndex('device_link_instance').on('device_link').column('instance').execute()
  },
}

/**
 * [flotilla] Which server instance runs each build of our builder, so that when several share one database, only
 * the builds of an instance that stopped are interrupted, not those another instance is still running. The row
 * goes when the build ends (releases/lifecycle.ts).
 */
const releaseBuilds: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await db.schema
      .createTable('release_build')
      .addColumn('release', 'integer', (column) => refersTo('release')(column).primaryKey())
      .addColumn('instance', types.text, (column) => column.notNull())
      .execute()
  },
}

/**
 * What several server instances on one database must share rather than keep in memory: the last log batch stored
 * of each device (so a batch retried to another instance, or after a restart, is stored once), device actions
 * waiting for unlinked devices (collected from whichever instance a device asks), failed logins (counted across
 * instances), and on PostgreSQL a sequence for log line ids (each instance took them from max(id) before, which
 * two instances would take twice).
 */
const clusterState: Migration = {
  async up(db: Kysely<any>) {
    const types = typesOf(db)
    await db.schema
      .createTable('device_log_batch')
      .addColumn('device', 'integer', (column) => refersTo('device')(column).primaryKey())
      .addColumn('journal', types.text, (column) => column.notNull())
      .addColumn('number', types.bigint, (column) => column.notNull())
      .execute()
    await withCreatedAt(db, withId(db, db.schema.createTable('device_action')))
      .addColumn('device', 'integer', (column) => refersTo('device')(column).notNull())
      .addColumn('action', types.json, (column) => column.notNull())
      .execute()
    await db.schema.createIndex('device_action_device_index').on('device_action').column('device').execute()
    await withId(db, db.schema.createTable('login_failure'))
      .addColumn('key_hash', types.text, (column) => column.notNull())
      .addColumn('at', types.bigint, (column) => column.notNull())
      .execute()
    await db.schema.createIndex('login_failure_key_index').on('login_failure').columns(['key_hash', 'at']).execute()
    if (dialectOf(db) === 'postgres') {
      await sql`create sequence device_log_id_seq as bigint`.execute(db)
      await sql`select setval('device_log_id_seq', coalesce((select max(id) from device_log), 0) + 1, false)`.execute(db)
    }
  },
}

/**
 * [flotilla] The files of release assets (at most 5 MiB each), in the database rather than a data dir, so that
 * every instance sharing the database serves them; gone with their asset.
 */
const releaseAssetContents: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('release_asset_content')
      .addColumn('asset', 'integer', (column) => refersTo('release_asset')(column).primaryKey())
      .addColumn('content', typesOf(db).binary, (column) => column.notNull())
      .execute()
  },
}

/** Every schema change in order; a name once shipped is never edited, only followed by a new one. */
export const MIGRATIONS: Record<string, Migration> = {
  '0001_initial_schema': initialSchema,
  '0002_device_type_catalogue': deviceTypeCatalogue,
  '0003_device_logs': deviceLogs,
  '0004_service_variables': serviceVariables,
  '0005_device_type_self_aliases': deviceTypeSelfAliases,
  '0006_balena_cli_fields': balenaCliFields,
  '0007_application_types': applicationTypes,
  '0008_balena_sdk_fields': balenaSdkFields,
  '0009_image_architecture': imageArchitecture,
  '0010_device_history': deviceHistory,
  '0011_release_assets': releaseAssets,
  '0012_image_context_digest': imageContextDigest,
  '0013_server_secrets': serverSecrets,
  '0014_server_instances': serverInstances,
  '0015_release_builds': releaseBuilds,
  '0016_cluster_state': clusterState,
  '0017_release_asset_contents': releaseAssetContents,
}

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return MIGRATIONS
  },
}
