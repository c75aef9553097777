/**
 * flotilla's SDK, as a library: `import {FleetClient, listDevices, streamLogs} from 'flotilla/sdk'`. The same
 * client and resource functions every flotilla command uses, for balenaCloud, openBalena or a flotilla server.
 * Each function takes the client first; none prints, prompts or exits.
 */
export {FleetClient, type ApiResponse, type ClientOptions, type RequestOptions, type StreamOptions} from './client.js'
export * from '../errors.js'
export * from './api-keys.js'
export * from './auth.js'
export * from './device-types.js'
export * from './devices.js'
export * from './fleets.js'
export * from './logs.js'
export * from './organizations.js'
export * from './releases.js'
export * from './ssh-keys.js'
export * from './tags.js'
export * from './variables.js'
