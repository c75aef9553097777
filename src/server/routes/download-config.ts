import type {FastifyInstance, FastifyRequest} from 'fastify'

import type {ConfigJson} from '../../protocol/config-json.js'
import {isConfigurableOsVersion, NEWEST_UNSUPPORTED_OS_VERSION, parseOsVersion} from '../../protocol/os-version.js'
import {createApiKey} from '../auth/api-keys.js'
import {type ServerContext, userActor} from '../context.js'
import {deviceTypeNamed} from '../db/device-types.js'
import {fleetActorAndDeviceType} from '../db/fleets.js'
import {badRequest, unauthorized} from '../http-errors.js'
import {RESOURCES} from '../odata/model.js'
import {ODataReader} from '../odata/translate.js'
import {publicHostname, wellKnownDocument} from './discovery.js'

/** The agent's default between target polls when the request names none, in minutes. */
const DEFAULT_POLL_INTERVAL_MINUTES = 10
const AGENT_LISTEN_PORT = 48_484

type Options = Record<string, unknown>

const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined)
const flag = (value: unknown): boolean | undefined => (value === undefined ? undefined : value === true || value === 'true' || value === '1')

/**
 * `GET|POST /download-config`: a config.json for a new device of a fleet the user sees, carrying a new
 * provisioning key, this server's endpoints (from its public URL) and [flotilla] its well-known document.
 */
async function deviceConfigFor(context: ServerContext, request: FastifyRequest, options: Options): Promise<ConfigJson> {
  const actor = await userActor(context, request)
  const appId = Number(options.appId)
  if (!Number.isInteger(appId) || appId <= 0) throw badRequest('appId must be the id of a fleet')
  if (!(await new ODataReader(context.db, actor).allVisible(RESOURCES.application, [appId]))) throw unauthorized()
  const fleet = await fleetActorAndDeviceType(context.db, appId)
  let deviceType = fleet.deviceType
  const askedType = text(options.deviceType)
  if (askedType) {
    const known = await deviceTypeNamed(context.db, askedType)
    if (!known) throw badRequest(`unknown device type "${askedType}"`)
    deviceType = known.slug
  }

  const version = text(options.version)
  if (version && parseOsVersion(version) && !isConfigurableOsVersion(version)) {
    throw badRequest(`balenaOS versions <= ${NEWEST_UNSUPPORTED_OS_VERSION} are no longer supported, please update`)
  }

  const minutes = options.appUpdatePollInterval === undefined ? DEFAULT_POLL_INTERVAL_MINUTES : Number(options.appUpdatePollInterval)
  if (!Number.isFinite(minutes) || minutes <= 0) throw badRequest('appUpdatePollInterval must be a positive number of minutes')
  const expiryDate = text(options.provisioningKeyExpiryDate)
  if (expiryDate && Number.isNaN(Date.parse(expiryDate))) throw badRequest('provisioningKeyExpiryDate must be an ISO date')
  const apiKey = await createApiKey(context.db, {
    actorId: fleet.actor,
    kind: 'provisioning-api-key',
    name: text(options.provisioningKeyName) ?? null,
    description: 'made by download-config',
    expiryDate: expiryDate ?? null,
  })
  const endpoints = wellKnownDocument(context)
  const config: ConfigJson = {
    applicationId: appId,
    deviceType,
    userId: actor.userId,
    appUpdatePollInterval: Math.round(minutes * 60_000),
    listenPort: AGENT_LISTEN_PORT,
    vpnPort: 443,
    apiEndpoint: endpoints.api,
    vpnEndpoint: publicHostname(context),
    registryEndpoint: context.registry ?? '',
    deltaEndpoint: endpoints.api,
    apiKey,
    flotillaEndpoints: endpoints,
  }
  const developmentMode = flag(options.developmentMode)
  if (developmentMode !== undefined) config.developmentMode = developmentMode
  const wifiSsid = text(options.wifiSsid)
  if (wifiSsid && options.network === 'wifi') {
    config.wifiSsid = wifiSsid
    const wifiKey = text(options.wifiKey)
    if (wifiKey) config.wifiKey = wifiKey
  }

  return config
}

export function registerDownloadConfigRoute(app: FastifyInstance, context: ServerContext): void {
  app.get('/download-config', async (request) => deviceConfigFor(context, request, (request.query ?? {}) as Options))
  app.post('/download-config', async (request) => deviceConfigFor(context, request, (request.body ?? {}) as Options))
}
