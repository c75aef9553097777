import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'

import Docker from 'dockerode'

import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../../helpers/docker.js'
import {FleetApi} from '../../helpers/fleet-api.js'
import {startServer, type TestServer} from '../../helpers/server.js'

interface Credentials {
  username: string
  password: string
}

const docker = new Docker()

/** What the engine answered a pull or push: 'ok', or its error. */
async function engineOutcome(start: () => Promise<NodeJS.ReadableStream>): Promise<string> {
  try {
    const stream = await start()
    return await new Promise<string>((resolve) => {
      docker.modem.followProgress(
        stream,
        (error: Error | null, events: Array<{error?: string}>) => resolve(error?.message ?? events.find((event) => event.error)?.error ?? 'ok'),
      )
    })
  } catch (error) {
    return (error as Error).message
  }
}

/**
 * The server's own Docker registry with token auth, attacked from every side: no credentials, another fleet's
 * device, a revoked device key, another organization's user. Fleet "alpha" is the admin's, fleet "omega" is
 * mallory's (another organization); each has a release whose image was pushed the way `deploy` pushes.
 */
describe('registry token authentication (attacks)', function () {
  this.timeout(180_000)
  let server: TestServer
  let api: FleetApi
  let registry: string
  let admin: string
  let mallory: string
  let alpha: {id: number; location: string; device: {id: number; uuid: string; api_key: string}}
  let omega: {id: number; location: string; device: {id: number; uuid: string; api_key: string}}
  const localTags: string[] = []

  const repositoryOf = (location: string) => location.slice(registry.length + 1)
  const basic = (credentials: Credentials) => `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`

  async function tokenFor(credentials: Credentials | undefined, location: string, actions = 'pull') {
    const scope = `repository:${repositoryOf(location)}:${actions}`
    return api.call('GET', `/auth/v1/token?service=${registry}&scope=${scope}`, {headers: credentials ? {authorization: basic(credentials)} : {}})
  }

  async function grantOf(credentials: Credentials | undefined, location: string, actions = 'pull'): Promise<unknown> {
    const answer = await tokenFor(credentials, location, actions)
    assert.equal(answer.status, 200, answer.body)
    const {token} = answer.json() as {token: string}
    return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).access
  }

  /** The registry's answer to reading the image's manifest with a token of these credentials (or none at all). */
  async function manifestStatus(credentials: Credentials | undefined, location: string): Promise<number> {
    const headers: Record<string, string> = {accept: 'application/vnd.docker.distribution.manifest.v2+json'}
    if (credentials) headers.authorization = `Bearer ${(await tokenFor(credentials, location)).json().token}`
    const response = await fetch(`http://${registry}/v2/${repositoryOf(location)}/manifests/latest`, {headers})
    await response.body?.cancel()
    return response.status
  }

  const pull = (location: string, credentials?: Credentials) =>
    engineOutcome(() => docker.pull(`${location}:latest`, credentials ? {authconfig: {...credentials, serveraddress: registry}} : {}))

  async function push(location: string, credentials?: Credentials): Promise<string> {
    await docker.getImage(BASE_IMAGE).tag({repo: location, tag: 'latest'})
    localTags.push(`${location}:latest`)
    const outcome = await engineOutcome(() => docker.getImage(`${location}:latest`).push({authconfig: credentials ? {...credentials, serveraddress: registry} : {}}))
    await docker.getImage(`${location}:latest`).remove().catch(() => undefined)
    return outcome
  }

  /** A fleet of the token's organization with a release whose image is pushed as `deploy` pushes it, and a device. */
  async function fleetWithImage(token: string, name: string) {
    const fleet = await api.createFleet(token, name)
    const release = await api.createRelease(token, fleet.id, randomBytes(16).toString('hex'))
    assert.equal(await push(release.location, {username: 'deployer', password: token}), 'ok')
    const device = await api.registerDevice(token, fleet.id, randomBytes(16).toString('hex'))
    return {id: fleet.id, location: release.location, device}
  }

  const deviceCredentials = (device: {uuid: string; api_key: string}) => ({username: `d_${device.uuid}`, password: device.api_key})

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    server = await startServer({managedRegistry: true})
    api = new FleetApi(server.url)
    registry = (await api.call('GET', '/.well-known/flotilla.json')).json().registry
    assert.match(registry, /^127\.0\.0\.1:\d+$/)
    await server.addUser({email: 'mallory@example.com', username: 'mallory', password: 'mallory-password-1'})
    admin = await api.login(server.admin.username, server.admin.password)
    mallory = await api.login('mallory', 'mallory-password-1')
    alpha = await fleetWithImage(admin, 'alpha')
    omega = await fleetWithImage(mallory, 'omega')
  })

  after(async () => {
    for (const tag of localTags) await docker.getImage(tag).remove().catch(() => undefined)
    await server?.stop()
  })

  it('refuses anonymous pulls and pushes: the registry wants a token, and a token without credentials grants nothing', async () => {
    const direct = await fetch(`http://${registry}/v2/${repositoryOf(alpha.location)}/manifests/latest`)
    await direct.body?.cancel()
    assert.equal(direct.status, 401)
    assert.match(direct.headers.get('www-authenticate') ?? '', new RegExp(`realm="${server.url}/auth/v1/token"`))
    assert.deepEqual(await grantOf(undefined, alpha.location, 'pull,push'), [])
    assert.equal(await manifestStatus(undefined, alpha.location), 401)
    assert.match(await pull(alpha.location), /denied|unauthorized|authentication required/i)
    assert.match(await push(alpha.location), /denied|unauthorized|authentication required/i)
  })

  it("refuses a device of another fleet this fleet's images, while its own device pulls them", async () => {
    assert.deepEqual(await grantOf(deviceCredentials(omega.device), alpha.location), [])
    assert.notEqual(await manifestStatus(deviceCredentials(omega.device), alpha.location), 200)
    assert.match(await pull(alpha.location, deviceCredentials(omega.device)), /denied|unauthorized/i)
    assert.deepEqual(await grantOf(deviceCredentials(alpha.device), alpha.location, 'pull,push'), [{type: 'repository', name: repositoryOf(alpha.location), actions: ['pull']}])
    assert.equal(await pull(alpha.location, deviceCredentials(alpha.device)), 'ok')
    localTags.push(`${alpha.location}:latest`)
    assert.match(await push(alpha.location, deviceCredentials(alpha.device)), /denied|unauthorized/i, 'a device only pulls')
  })

  it("refuses a device's key under another device's name", async () => {
    const answer = await tokenFor({username: `d_${alpha.device.uuid}`, password: omega.device.api_key}, omega.location)
    assert.equal(answer.status, 401)
  })

  it('gives a revoked device key no token', async () => {
    const key = (await api.call('POST', `/api-key/device/${alpha.device.id}/device-key`, {token: admin, json: {name: 'to revoke'}})).json() as string
    const credentials = {username: `d_${alpha.device.uuid}`, password: key}
    assert.equal((await grantOf(credentials, alpha.location) as unknown[]).length, 1, 'the key works before it is revoked')
    const actor = (await api.call('GET', `/v7/device(${alpha.device.id})?$select=actor`, {token: admin})).json().d[0].actor.__id
    const [row] = (await api.call('GET', `/v7/api_key?$select=id&$filter=is_of__actor eq ${actor} and name eq 'to revoke'`, {token: admin})).json().d
    assert.equal((await api.call('DELETE', `/v7/api_key(${row.id})`, {token: admin})).status, 200)
    assert.equal((await tokenFor(credentials, alpha.location)).status, 401)
    assert.match(await pull(alpha.location, credentials), /401|unauthorized|denied/i)
  })

  it('grants a user of another organization nothing on this fleet: no pull, no deploy push', async () => {
    const credentials = {username: 'mallory', password: mallory}
    assert.deepEqual(await grantOf(credentials, alpha.location, 'pull,push'), [])
    assert.notEqual(await manifestStatus(credentials, alpha.location), 200)
    assert.match(await push(alpha.location, credentials), /denied|unauthorized/i)
    assert.deepEqual(await grantOf({username: 'admin', password: admin}, alpha.location, 'pull,push'), [{type: 'repository', name: repositoryOf(alpha.location), actions: ['pull', 'push']}])
  })

  it('grants nothing for another service, a malformed scope, or the catalog', async () => {
    const credentials = {username: 'admin', password: admin}
    const scope = `repository:${repositoryOf(alpha.location)}:pull`
    const grant = async (query: string) => JSON.parse(Buffer.from((await api.call('GET', `/auth/v1/token?${query}`, {headers: {authorization: basic(credentials)}})).json().token.split('.')[1], 'base64url').toString()).access
    assert.deepEqual(await grant(`service=registry.example.com&scope=${scope}`), [])
    assert.deepEqual(await grant(`service=${registry}&scope=registry:catalog:*`), [])
    assert.deepEqual(await grant(`service=${registry}&scope=repository:../etc:pull`), [])
    assert.equal((await api.call('GET', `/auth/v1/token?service=${registry}&scope=${scope}`, {headers: {authorization: basic({username: 'admin', password: 'not-a-key-at-all'})}})).status, 401)
  })
})
