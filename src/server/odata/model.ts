import {type RawBuilder, sql} from 'kysely'

import {overallStatusSql} from './overall-status.js'

/**
 * The pine resources the server exposes under /v7: every table, column and navigation the OData translation may
 * name comes from here, so nothing a client writes in a URL ever becomes an identifier in SQL.
 */
export type FieldType = 'id' | 'integer' | 'real' | 'text' | 'boolean' | 'date' | 'json' | 'reference'

export interface FieldSpec {
  type: FieldType
  /** For references: the resource the value points at (also a to-one navigation of the same name). */
  target?: string
  /** A value the database computes from other columns; never written. */
  computed?: (alias: string) => RawBuilder<unknown>
  /** Accepted in a POST body. */
  create?: boolean
  /** Accepted in a PATCH body. */
  update?: boolean
  /** Must be present (and not null) in a POST body, unless a resource hook fills it in. */
  required?: boolean
  /** Text: the most characters a client may write. */
  maxLength?: number
}

export interface NavigationSpec {
  target: string
  many: boolean
  /** The field of this resource whose value links to the target. */
  parentField: string
  /** The field of the target matched against parentField (directly, or through `via`). */
  childField: string
  /** A link table between the two: via.parentColumn = parent.parentField and via.childColumn = child.childField. */
  via?: {table: string; parentColumn: string; childColumn: string}
}

export interface ResourceSpec {
  name: string
  table: string
  fields: Record<string, FieldSpec>
  navigations: Record<string, NavigationSpec>
}

const id: FieldSpec = {type: 'id'}
const createdAt: FieldSpec = {type: 'date'}
const editable = (type: FieldType, extra: Partial<FieldSpec> = {}): FieldSpec => ({type, create: true, update: true, ...extra})
const reference = (target: string, extra: Partial<FieldSpec> = {}): FieldSpec => ({type: 'reference', target, ...extra})
const settable = (target: string, extra: Partial<FieldSpec> = {}): FieldSpec => reference(target, {create: true, update: true, ...extra})
const toMany = (target: string, childField: string): NavigationSpec => ({target, many: true, parentField: 'id', childField})

/**
 * Variables' and tags' lengths are balena's (its model, open-balena-api's balena.sbvr; names are its 255-character
 * short text), so what one server accepts the other does too.
 */
const NAME_MAX_LENGTH = 255

function variableResource(parent: string, valueMaxLength: number): Omit<ResourceSpec, 'name' | 'table'> {
  return {
    fields: {
      id,
      created_at: createdAt,
      [parent]: reference(parent, {create: true, required: true}),
      name: editable('text', {required: true, maxLength: NAME_MAX_LENGTH}),
      value: editable('text', {required: true, maxLength: valueMaxLength}),
    },
    navigations: {},
  }
}

function tagResource(parent: string, keyMaxLength: number, valueMaxLength: number): Omit<ResourceSpec, 'name' | 'table'> {
  return {
    fields: {
      id,
      created_at: createdAt,
      [parent]: reference(parent, {create: true, required: true}),
      tag_key: editable('text', {required: true, maxLength: keyMaxLength}),
      value: editable('text', {required: true, maxLength: valueMaxLength}),
    },
    navigations: {},
  }
}

const definitions: Record<string, Omit<ResourceSpec, 'name' | 'table'>> = {
  actor: {fields: {id}, navigations: {}},
  organization: {
    fields: {id, created_at: createdAt, name: {type: 'text'}, handle: {type: 'text'}},
    navigations: {application: toMany('application', 'organization'), organization_membership: toMany('organization_membership', 'is_member_of__organization')},
  },
  organization_membership: {
    fields: {id, created_at: createdAt, user: reference('user'), is_member_of__organization: reference('organization')},
    navigations: {},
  },
  user: {
    fields: {id, created_at: createdAt, username: {type: 'text'}, actor: reference('actor')},
    navigations: {user__has__public_key: toMany('user__has__public_key', 'user'), organization_membership: toMany('organization_membership', 'user')},
  },
  user__has__public_key: {
    fields: {
      id,
      created_at: createdAt,
      user: reference('user', {create: true, required: true}),
      title: editable('text', {required: true}),
      public_key: {type: 'text', create: true, required: true},
    },
    navigations: {},
  },
  api_key: {
    fields: {
      id,
      created_at: createdAt,
      name: editable('text'),
      description: editable('text'),
      expiry_date: editable('date'),
      is_of__actor: reference('actor'),
    },
    navigations: {},
  },
  cpu_architecture: {fields: {id, slug: {type: 'text'}}, navigations: {is_supported_by__device_type: toMany('device_type', 'is_of__cpu_architecture')}},
  device_type: {
    fields: {id, slug: {type: 'text'}, name: {type: 'text'}, is_of__cpu_architecture: reference('cpu_architecture'), contract: {type: 'json'}},
    navigations: {
      device_type_alias: toMany('device_type_alias', 'device_type'),
      describes__device: toMany('device', 'is_of__device_type'),
      is_default_for__application: toMany('application', 'is_for__device_type'),
    },
  },
  device_type_alias: {fields: {id, device_type: reference('device_type'), is_referenced_by__alias: {type: 'text'}}, navigations: {}},
  application_type: {
    fields: {
      id,
      slug: {type: 'text'},
      name: {type: 'text'},
      description: {type: 'text'},
      supports_multicontainer: {type: 'boolean'},
      supports_web_url: {type: 'boolean'},
      is_legacy: {type: 'boolean'},
    },
    navigations: {},
  },
  application: {
    fields: {
      id,
      created_at: createdAt,
      app_name: editable('text', {required: true}),
      slug: {type: 'text'},
      uuid: {type: 'text', create: true},
      is_for__device_type: settable('device_type', {required: true}),
      organization: settable('organization', {required: true}),
      is_of__class: {type: 'text', create: true},
      should_track_latest_release: editable('boolean'),
      should_be_running__release: settable('release'),
      is_host: editable('boolean'),
      is_archived: editable('boolean'),
      is_public: editable('boolean'),
      actor: reference('actor'),
      application_type: reference('application_type'),
    },
    navigations: {
      owns__device: toMany('device', 'belongs_to__application'),
      owns__release: toMany('release', 'belongs_to__application'),
      service: toMany('service', 'application'),
      application_tag: toMany('application_tag', 'application'),
      application_environment_variable: toMany('application_environment_variable', 'application'),
      application_config_variable: toMany('application_config_variable', 'application'),
      is_directly_accessible_by__user: {
        target: 'user',
        many: true,
        parentField: 'organization',
        childField: 'id',
        via: {table: 'organization_membership', parentColumn: 'is_member_of__organization', childColumn: 'user'},
      },
    },
  },
  device: {
    fields: {
      id,
      created_at: createdAt,
      uuid: {type: 'text', create: true},
      device_name: editable('text'),
      note: editable('text'),
      is_of__device_type: settable('device_type', {required: true}),
      belongs_to__application: settable('application', {required: true}),
      belongs_to__user: settable('user'),
      actor: reference('actor'),
      is_online: editable('boolean'),
      last_connectivity_event: editable('date'),
      api_heartbeat_state: editable('text'),
      status: editable('text'),
      os_version: editable('text'),
      os_variant: editable('text'),
      supervisor_version: editable('text'),
      ip_address: editable('text'),
      public_address: editable('text'),
      mac_address: editable('text'),
      api_port: editable('integer'),
      memory_usage: editable('integer'),
      memory_total: editable('integer'),
      storage_usage: editable('integer'),
      storage_total: editable('integer'),
      cpu_usage: editable('integer'),
      cpu_temp: editable('integer'),
      cpu_id: editable('text'),
      storage_block_device: editable('text'),
      is_undervolted: editable('boolean'),
      download_progress: editable('integer'),
      is_running__release: settable('release'),
      is_pinned_on__release: settable('release'),
      should_be_running__release: reference('release', {
        computed: (alias) =>
          sql`coalesce(${sql.ref(`${alias}.is_pinned_on__release`)}, (select fleet.should_be_running__release from application as fleet where fleet.id = ${sql.ref(`${alias}.belongs_to__application`)}))`,
      }),
      update_status: editable('text'),
      overall_status: {type: 'text', computed: overallStatusSql},
      is_web_accessible: editable('boolean'),
      is_active: editable('boolean'),
      is_connected_to_vpn: {type: 'boolean'},
    },
    navigations: {
      device_tag: toMany('device_tag', 'device'),
      device_environment_variable: toMany('device_environment_variable', 'device'),
      device_config_variable: toMany('device_config_variable', 'device'),
      image_install: toMany('image_install', 'device'),
      service_install: toMany('service_install', 'device'),
    },
  },
  release: {
    fields: {
      id,
      created_at: createdAt,
      belongs_to__application: reference('application', {create: true, required: true}),
      commit: {type: 'text', create: true},
      composition: editable('json'),
      status: editable('text'),
      source: editable('text'),
      build_log: editable('text'),
      start_timestamp: editable('date'),
      end_timestamp: editable('date'),
      is_final: editable('boolean'),
      semver: editable('text'),
      revision: {type: 'integer'},
      raw_version: {type: 'text'},
      variant: editable('text'),
      phase: editable('text'),
      is_invalidated: editable('boolean'),
      note: editable('text'),
      known_issue_list: editable('text'),
      is_created_by__user: reference('user', {create: true}),
      is_passing_tests: editable('boolean'),
    },
    navigations: {
      release_tag: toMany('release_tag', 'release'),
      release_image: toMany('image__is_part_of__release', 'is_part_of__release'),
      // balena's name for the same link rows, each expanding to its `image`.
      contains__image: toMany('image__is_part_of__release', 'is_part_of__release'),
      release_asset: toMany('release_asset', 'release'),
      should_be_running_on__device: toMany('device', 'is_pinned_on__release'),
    },
  },
  release_tag: tagResource('release', 164, 1000),
  service: {
    fields: {id, created_at: createdAt, application: reference('application', {create: true, required: true}), service_name: {type: 'text', create: true, required: true}},
    navigations: {
      is_built_by__image: toMany('image', 'is_a_build_of__service'),
      service_environment_variable: toMany('service_environment_variable', 'service'),
      service_install: toMany('service_install', 'installs__service'),
      is_installed_on__device: toMany('service_install', 'installs__service'),
    },
  },
  service_install: {
    fields: {id, created_at: createdAt, device: reference('device'), installs__service: reference('service')},
    navigations: {
      // balena's state endpoint expands the installed service as `service` too.
      service: {target: 'service', many: false, parentField: 'installs__service', childField: 'id'},
      device_service_environment_variable: toMany('device_service_environment_variable', 'service_install'),
    },
  },
  image: {
    fields: {
      id,
      created_at: createdAt,
      is_a_build_of__service: reference('service', {create: true, required: true}),
      is_stored_at__image_location: {type: 'text'},
      content_hash: editable('text'),
      image_size: editable('integer'),
      status: editable('text'),
      start_timestamp: editable('date'),
      end_timestamp: editable('date'),
      push_timestamp: editable('date'),
      dockerfile: editable('text'),
      project_type: editable('text'),
      error_message: editable('text'),
      build_log: editable('text'),
    },
    navigations: {release_image: toMany('image__is_part_of__release', 'image'), is_part_of__release: toMany('image__is_part_of__release', 'image')},
  },
  image__is_part_of__release: {
    fields: {id, created_at: createdAt, image: reference('image', {create: true, required: true}), is_part_of__release: reference('release', {create: true, required: true})},
    navigations: {},
  },
  /** `asset` is written by the upload route alone (routes/release-assets.ts); through pine only as null. */
  release_asset: {
    fields: {
      id,
      created_at: createdAt,
      release: reference('release', {create: true, required: true}),
      asset_key: editable('text', {required: true, maxLength: NAME_MAX_LENGTH}),
      asset: editable('json'),
    },
    navigations: {},
  },
  /** Written by the server alone (db/device-history.ts): one row a period in which a device's tracked fields held. */
  device_history: {
    fields: {
      id,
      created_at: createdAt,
      end_timestamp: {type: 'date'},
      is_created_by__actor: reference('actor'),
      is_ended_by__actor: reference('actor'),
      tracks__device: reference('device'),
      tracks__actor: reference('actor'),
      uuid: {type: 'text'},
      belongs_to__application: reference('application'),
      is_of__device_type: reference('device_type'),
      is_active: {type: 'boolean'},
      is_running__release: reference('release'),
      should_be_running__release: reference('release'),
      os_version: {type: 'text'},
      os_variant: {type: 'text'},
      supervisor_version: {type: 'text'},
    },
    navigations: {},
  },
  image_install: {
    fields: {
      id,
      created_at: createdAt,
      device: reference('device'),
      installs__image: reference('image'),
      install_date: {type: 'date'},
      status: {type: 'text'},
      download_progress: {type: 'integer'},
      is_provided_by__release: reference('release'),
    },
    navigations: {},
  },
  application_environment_variable: variableResource('application', 106_104),
  application_config_variable: variableResource('application', 492_001),
  device_environment_variable: variableResource('device', 515_798),
  device_config_variable: variableResource('device', 372_340),
  service_environment_variable: variableResource('service', 100_000),
  device_service_environment_variable: variableResource('service_install', 285_082),
  application_tag: tagResource('application', 100, 1000),
  device_tag: tagResource('device', 100, 60_158),
}

/** Other names clients use for a resource (balena's short aliases). */
const ALIASES: Record<string, string> = {release_image: 'image__is_part_of__release'}

export const RESOURCES: Record<string, ResourceSpec> = Object.fromEntries(
  Object.entries(definitions).map(([name, definition]) => {
    const navigations = {...definition.navigations}
    for (const [field, spec] of Object.entries(definition.fields)) {
      if (spec.type === 'reference' && spec.target) navigations[field] = {target: spec.target, many: false, parentField: field, childField: 'id'}
    }

    return [name, {name, table: name, fields: definition.fields, navigations}]
  }),
)

/** The resource a URL names, or undefined when the server has no such resource. */
export function resourceNamed(name: string): ResourceSpec | undefined {
  const canonical = ALIASES[name] ?? name
  return Object.hasOwn(RESOURCES, canonical) ? RESOURCES[canonical] : undefined
}

export function fieldOf(resource: ResourceSpec, name: string): FieldSpec | undefined {
  return Object.hasOwn(resource.fields, name) ? resource.fields[name] : undefined
}

export function navigationOf(resource: ResourceSpec, name: string): NavigationSpec | undefined {
  return Object.hasOwn(resource.navigations, name) ? resource.navigations[name] : undefined
}

/** The SQL of a field read through a table alias: a column, or the expression of a computed field. */
export function fieldSql(resource: ResourceSpec, alias: string, name: string): RawBuilder<unknown> {
  const field = fieldOf(resource, name)
  if (field?.computed) return field.computed(alias)
  return sql`${sql.ref(`${alias}.${name}`)}`
}
