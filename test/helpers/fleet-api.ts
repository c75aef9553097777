import {strict as assert} from 'node:assert'

import got, {type Method} from 'got'

export interface Answer {
  status: number
  body: string
  json: () => any // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Record<string, string | string[] | undefined>
}

/** Plain HTTP calls to a test server, as any client would make them, with the answer whatever its status. */
export class FleetApi {
  constructor(readonly url: string) {}

  /** `timeoutMs` bounds the whole exchange (a hostile request must not hang the test with the server). */
  async call(method: Method, path: string, options: {token?: string; json?: unknown; body?: string | Buffer; headers?: Record<string, string>; timeoutMs?: number} = {}): Promise<Answer> {
    const response = await got(`${this.url}${path}`, {
      method,
      json: options.json,
      body: options.body,
      headers: {...(options.token ? {authorization: `Bearer ${options.token}`} : {}), ...options.headers},
      throwHttpErrors: false,
      retry: {limit: 0},
      timeout: options.timeoutMs === undefined ? undefined : {request: options.timeoutMs},
    })
    return {status: response.statusCode, body: response.body, json: () => JSON.parse(response.body), headers: response.headers}
  }

  /** Asserts that the server still answers `GET /ping` within the deadline (after or during a hostile request). */
  async assertResponsive(deadlineMs = 2000): Promise<void> {
    const answer = await this.call('GET', '/ping', {timeoutMs: deadlineMs})
    assert.equal(answer.status, 200, answer.body)
  }

  async login(username: string, password: string): Promise<string> {
    const answer = await this.call('POST', '/login_', {json: {username, password}})
    assert.equal(answer.status, 200, answer.body)
    return answer.body
  }

  async created(token: string, resource: string, values: Record<string, unknown>): Promise<Record<string, any>> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const answer = await this.call('POST', `/v7/${resource}`, {token, json: values})
    assert.equal(answer.status, 201, `${resource}: ${answer.body}`)
    return answer.json()
  }

  async patch(token: string, path: string, values: Record<string, unknown>): Promise<void> {
    const answer = await this.call('PATCH', `/v7/${path}`, {token, json: values})
    assert.equal(answer.status, 200, `${path}: ${answer.body}`)
  }

  /** A fleet of the token's first organization; builds for it target the device type's CPU (generic-amd64 is this machine's). */
  async createFleet(token: string, name: string, deviceTypeSlug = 'raspberrypi4-64'): Promise<{id: number; slug: string; uuid: string}> {
    const organization = (await this.call('GET', '/v7/organization?$select=id', {token})).json().d[0].id
    const deviceType = (await this.call('GET', `/v7/device_type?$select=id&$filter=slug eq '${deviceTypeSlug}'`)).json().d[0].id
    return this.created(token, 'application', {app_name: name, organization, is_for__device_type: deviceType}) as Promise<{id: number; slug: string; uuid: string}>
  }

  /** Registers a device with a provisioning key, as an agent does; returns its id, uuid and device key. */
  async registerDevice(token: string, fleetId: number, uuid: string): Promise<{id: number; uuid: string; api_key: string}> {
    const key = (await this.call('POST', `/api-key/application/${fleetId}/provisioning`, {token, json: {name: 'provisioning'}})).json()
    const answer = await this.call('POST', '/device/register', {token: key, json: {application: fleetId, device_type: 'raspberrypi4-64', uuid}})
    assert.equal(answer.status, 201, answer.body)
    return answer.json()
  }

  /** A successful release of one service `main` (its compose entry given), made through pine as `deploy` would; no image is built. */
  async createRelease(token: string, fleetId: number, commit: string, main: Record<string, unknown> = {image: 'main', labels: {'io.flotilla.test': '1'}}): Promise<{id: number; imageId: number; location: string}> {
    const existing = (await this.call('GET', `/v7/service?$select=id&$filter=application eq ${fleetId} and service_name eq 'main'`, {token})).json().d[0]
    const service = existing ?? (await this.created(token, 'service', {application: fleetId, service_name: 'main'}))
    const release = await this.created(token, 'release', {belongs_to__application: fleetId, commit, status: 'running', composition: {version: '2.4', services: {main}}})
    const image = await this.created(token, 'image', {is_a_build_of__service: service.id})
    await this.created(token, 'image__is_part_of__release', {image: image.id, is_part_of__release: release.id})
    await this.patch(token, `release(${release.id})`, {status: 'success', end_timestamp: new Date().toISOString()})
    return {id: release.id, imageId: image.id, location: image.is_stored_at__image_location}
  }
}

/** Polls `check` until it returns something truthy or the deadline passes. */
export async function eventually<T>(check: () => Promise<T | undefined | false>, what: string, deadlineMs = 15_000): Promise<T> {
  const deadline = Date.now() + deadlineMs
  for (;;) {
    const result = await check()
    if (result) return result
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
