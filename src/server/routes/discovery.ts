import type {FastifyInstance} from 'fastify'

import type {ServerContext} from '../context.js'
import {DEVICE_TYPE_CATALOGUE, listDeviceTypeAliases, listDeviceTypes} from '../db/device-types.js'
import {CONFIG_VAR_NAME_PATTERN, RESERVED_VAR_NAMES} from '../odata/resource-rules.js'

/** Where this server's services are, from its public URL (a request's Host header could name anyone's): the well-known document. */
export function wellKnownDocument(context: ServerContext) {
  const origin = context.publicUrl
  return {
    api: origin,
    builder: origin,
    ssh: {host: publicHostname(context), port: context.publicSshPort ?? context.sshPort, hostKey: context.sshHostKey},
    tunnel: origin,
    registry: context.registry,
    version: context.version,
  }
}

/** The host name of the public URL, without the brackets of an IPv6 address. */
export function publicHostname(context: ServerContext): string {
  return new URL(context.publicUrl).hostname.replace(/^\[(.*)\]$/, '$1')
}

/** Answers anyone may ask: liveness, where this server's services are, device types, variable rules. */
export function registerDiscoveryRoutes(app: FastifyInstance, context: ServerContext): void {
  app.get('/ping', async (_request, reply) => reply.type('text/plain').send('OK'))

  app.get('/.well-known/flotilla.json', async () => wellKnownDocument(context))

  app.get('/device-types/v1', async () => {
    const rows = await listDeviceTypes(context.db)
    const aliases = await listDeviceTypeAliases(context.db)
    return rows.map((row) => {
      const catalogued = DEVICE_TYPE_CATALOGUE.find((entry) => entry.slug === row.slug)
      return {
        slug: row.slug,
        name: row.name,
        aliases: aliases.filter((alias) => alias.device_type === row.id && alias.is_referenced_by__alias !== row.slug).map((alias) => alias.is_referenced_by__alias),
        arch: row.arch,
        options: [],
        // Where config.json lives in the image (os configure): balenaOS keeps it on the first, boot partition.
        configuration: {config: {partition: {primary: 1}, path: '/config.json'}},
        yocto: {...(catalogued?.yocto ?? {machine: row.slug, deployArtifact: 'balena-image.img', fstype: 'balenaos-img'}), compressed: true, archive: false},
      }
    })
  })

  // balena-sdk's config.getAll: `device public-url` builds https://<uuid>.<deviceUrlsBase> from it.
  app.get('/config', async () => ({deviceUrlsBase: publicHostname(context)}))

  app.get('/config/vars', async () => ({
    reservedNames: RESERVED_VAR_NAMES,
    reservedNamespaces: ['RESIN_', 'BALENA_'],
    invalidRegex: String.raw`/^\d|\W/`,
    whiteListedNames: [],
    whiteListedNamespaces: [],
    blackListedNames: ['BALENA_SUPERVISOR_API_KEY', 'RESIN_SUPERVISOR_API_KEY', 'BALENA_API_KEY', 'RESIN_API_KEY'],
    configVarSchema: {type: 'object', propertyNames: {pattern: CONFIG_VAR_NAME_PATTERN.source}, properties: {}},
  }))
}
