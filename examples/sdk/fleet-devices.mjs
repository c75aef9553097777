#!/usr/bin/env node
// Lists the devices of a fleet, then follows one device's logs, with flotilla's SDK as a library.
//   FLOTILLA_URL=http://127.0.0.1:7171 FLOTILLA_TOKEN=<token or API key> node fleet-devices.mjs <fleet> [<device uuid>]
// FLOTILLA_URL may be a balena domain too (balena-cloud.com): the SDK speaks balena's API.
import {ExpectedError, FleetClient, listDevices, streamLogs} from 'flotilla/sdk'

const [fleet, device] = process.argv.slice(2)
if (!fleet || !process.env.FLOTILLA_URL) {
  console.error('usage: FLOTILLA_URL=<server> FLOTILLA_TOKEN=<token> node fleet-devices.mjs <fleet> [<device uuid>]')
  process.exit(2)
}

const client = new FleetClient({remote: process.env.FLOTILLA_URL, token: process.env.FLOTILLA_TOKEN, clientName: 'fleet-devices-example/1.0'})
try {
  for (const {uuid, device_name, is_online, status} of await listDevices(client, {fleet})) {
    console.log(`${uuid} ${device_name} ${is_online ? 'online' : 'offline'} ${status ?? ''}`.trimEnd())
  }

  if (device) {
    // Ctrl-C ends the loop: the stream is aborted with the signal.
    const stop = new AbortController()
    process.once('SIGINT', () => stop.abort())
    for await (const line of streamLogs(client, device, {tail: true, count: 10, signal: stop.signal})) {
      console.log(`[${new Date(line.timestamp).toISOString()}] ${line.serviceName ? `[${line.serviceName}] ` : ''}${line.message}`)
    }
  }
} catch (error) {
  // The SDK's expected errors (not found, not logged in, unreachable) carry a message for people.
  if (!(error instanceof ExpectedError)) throw error
  console.error(`error: ${error.message}`)
  process.exit(1)
}
