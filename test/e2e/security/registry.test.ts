import assert from 'node:assert/strict'
import {type ChildProcess, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import Docker from 'dockerode'

import {LABELS} from '../../../src/agent/reconciler.js'
import type {FlotillaServer} from '../../../src/server/app.js'
import {CLI_BIN, makeCliHome, PROJECT_ROOT, runCli} from '../../helpers/cli.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker} from '../../helpers/docker.js'
import {eventually, FleetApi} from '../../helpers/fleet-api.js'
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

  it("grants a member's deploy request (balena-cli's indexed scopes, Bearer session) its own fleet's repositories only", async () => {
    const query = `service=${registry}&scope%5B0%5D=repository:${repositoryOf(alpha.location)}:pull,push&scope%5B1%5D=repository:${repositoryOf(omega.location)}:pull,push`
    const answer = await api.call('GET', `/auth/v1/token?${query}`, {token: admin})
    assert.equal(answer.status, 200, answer.body)
    const {token, access_token: accessToken, expires_in: expiresIn} = answer.json()
    assert.equal(accessToken, token)
    assert.ok(expiresIn > 0)
    const access = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).access
    assert.deepEqual(access, [{type: 'repository', name: repositoryOf(alpha.location), actions: ['pull', 'push']}])
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

/**
 * A push through the builder into the server's token registry, and a device running the release: the engine
 * the builder pushes with is watched, so the test holds the very credential the builder gave it, and tries it
 * where it must not reach while the build runs and once it is over. In-process server, real engine and registry.
 */
describe('the builder and a device through the token registry', function () {
  this.timeout(300_000)
  const workDir = mkdtempSync(path.join(tmpdir(), 'flotilla-registry-build-'))
  const home = makeCliHome()
  let server: FlotillaServer
  let url: string
  let registry: string
  let admin: string
  let fleet: {id: number; slug: string}
  let otherLocation: string
  let agent: ChildProcess | undefined
  let agentOutput = ''
  let deviceUuid: string | undefined
  const pulled: string[] = []
  /** What the builder's credential got while its build ran, and once it was over. */
  const probes: {own?: unknown; other?: unknown; otherManifest?: number; afterBuild?: number} = {}
  let builderCredentials: Credentials | undefined
  let api: FleetApi

  const scopeQuery = (location: string, actions: string) => `/auth/v1/token?service=${registry}&scope=repository:${location.slice(registry.length + 1)}:${actions}`
  const tokenAnswer = (credentials: Credentials, location: string, actions: string) =>
    api.call('GET', scopeQuery(location, actions), {headers: {authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`}})
  const accessOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')).access

  /** Runs while the engine pushes: the credential is live, so this is what a thief of it could do. */
  async function probeWith(credentials: Credentials, tag: string): Promise<void> {
    builderCredentials = {username: credentials.username, password: credentials.password}
    const own = (await tokenAnswer(credentials, tag.replace(/:latest$/, ''), 'pull,push')).json()
    probes.own = accessOf(own.token)
    const other = (await tokenAnswer(credentials, otherLocation, 'pull,push')).json()
    probes.other = accessOf(other.token)
    const manifest = await fetch(`http://${registry}/v2/${otherLocation.slice(registry.length + 1)}/manifests/latest`, {headers: {authorization: `Bearer ${other.token}`}})
    await manifest.body?.cancel()
    probes.otherManifest = manifest.status
  }

  /** The local engine, except that a push first lets the test try the credential it carries. */
  function watchedEngine(): Docker {
    const engine = new Docker()
    const watched = Object.create(engine) as Docker
    watched.getImage = (name: string) => {
      const image = engine.getImage(name)
      const push = image.push.bind(image) as (options: Record<string, unknown>) => Promise<NodeJS.ReadableStream>
      image.push = (async (options: {authconfig: Credentials}) => {
        await probeWith(options.authconfig, name)
        return push(options)
      }) as unknown as typeof image.push
      return image
    }

    return watched
  }

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
    const password = `pw-${randomBytes(8).toString('hex')}`
    const {createServer} = await import('../../../src/server/app.js')
    const engine = watchedEngine()
    server = await createServer({
      dataDir: path.join(workDir, 'server'),
      manageRegistry: true,
      port: 0,
      sshPort: 0,
      logger: {level: 'silent'},
      admin: {email: 'admin@flotilla.test', username: 'admin', password},
      builder: {docker: async () => engine},
    })
    url = await server.listen()
    registry = server.address().registry as string
    api = new FleetApi(url)
    admin = await api.login('admin', password)
    fleet = await api.createFleet(admin, 'built', 'generic-amd64')
    const other = await api.createFleet(admin, 'other')
    otherLocation = (await api.createRelease(admin, other.id, randomBytes(16).toString('hex'))).location
    await docker.getImage(BASE_IMAGE).tag({repo: otherLocation, tag: 'latest'})
    assert.equal(await engineOutcome(() => docker.getImage(`${otherLocation}:latest`).push({authconfig: {username: 'admin', password: admin, serveraddress: registry}})), 'ok')
    await docker.getImage(`${otherLocation}:latest`).remove()

    const project = path.join(workDir, 'project')
    mkdirSync(project)
    // A compose file, as the single-Dockerfile default composition is privileged, which this engine cannot run.
    writeFileSync(path.join(project, 'docker-compose.yml'), 'version: "2.1"\nservices:\n  main:\n    build: .\n')
    writeFileSync(path.join(project, 'Dockerfile'), `FROM ${BASE_IMAGE}\nRUN echo "built for ${fleet.slug}" > /built\nCMD ["sh", "-c", "cat /built; trap 'exit 0' TERM; sleep 3600 & wait"]\n`)
    const pushed = await runCli(['push', fleet.slug, '--source', project], {env: {HOME: home, FLOTILLA_URL: url, FLOTILLA_TOKEN: admin}, timeoutMs: 240_000})
    assert.equal(pushed.exitCode, 0, pushed.stderr)
    assert.ok(builderCredentials, 'the builder pushed with credentials')
    probes.afterBuild = (await tokenAnswer(builderCredentials, otherLocation, 'pull')).status
  })

  after(async () => {
    agent?.kill('SIGTERM')
    if (agent && agent.exitCode === null) await new Promise((resolve) => agent?.once('exit', resolve))
    if (deviceUuid) {
      for (const container of await docker.listContainers({all: true, filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})) await docker.getContainer(container.Id).remove({force: true})
    }

    for (const image of pulled) await docker.getImage(image).remove({force: true}).catch(() => undefined)
    // What the builder built and tagged under this run's registry (its port is this run's alone).
    for (const image of await docker.listImages()) {
      if (registry && [...(image.RepoTags ?? []), ...(image.RepoDigests ?? [])].some((name) => name.startsWith(`${registry}/`))) await docker.getImage(image.Id).remove({force: true}).catch(() => undefined)
    }

    await server?.close()
    rmSync(workDir, {recursive: true, force: true})
    rmSync(home, {recursive: true, force: true})
  })

  it("gives the builder a credential for its own release's images only, good only while the build runs", async () => {
    assert.deepEqual((probes.own as Array<{actions: string[]}>)[0]?.actions, ['pull', 'push'])
    assert.deepEqual(probes.other, [], "another fleet's repository is not granted")
    assert.notEqual(probes.otherManifest, 200)
    assert.equal(probes.afterBuild, 401, 'the credential is revoked when the build ends')
  })

  it('runs the pushed release on a device, which pulls it from the token registry with its own key', async () => {
    const images = (await api.call('GET', `/v7/image?$select=id,is_stored_at__image_location,content_hash&$filter=is_a_build_of__service/any(s:s/application eq ${fleet.id})`, {token: admin})).json().d
    assert.equal(images.length, 1)
    const [{is_stored_at__image_location: location, content_hash: digest}] = images
    assert.ok(location.startsWith(`${registry}/v2/`))
    // The builder's engine is the device's here: remove the built image so the device must pull it.
    const built = await docker.getImage(`${location}:latest`).inspect()
    await docker.getImage(built.Id).remove({force: true})
    pulled.push(`${location}@${digest}`)

    const configPath = path.join(workDir, 'config.json')
    const generated = await runCli(['config', 'generate', '--fleet', fleet.slug, '-o', configPath], {env: {HOME: home, FLOTILLA_URL: url, FLOTILLA_TOKEN: admin}})
    assert.equal(generated.exitCode, 0, generated.stderr)
    agent = spawn(process.execPath, [CLI_BIN, 'agent', 'start', '--config', configPath, '--data-dir', path.join(workDir, 'agent'), '--host-network', '--local-api-port', '0', '--poll-interval', '1'], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, HOME: home, NO_COLOR: '1', ...(process.env.DOCKER_HOST ? {DOCKER_HOST: process.env.DOCKER_HOST} : {})},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    agent.stdout?.setEncoding('utf8').on('data', (chunk: string) => (agentOutput += chunk))
    agent.stderr?.setEncoding('utf8').on('data', (chunk: string) => (agentOutput += chunk))
    deviceUuid = await eventually(async () => (JSON.parse(await readFile(configPath, 'utf8')) as {uuid?: string}).uuid, `the device to register\n${agentOutput}`, 30_000)
    const container = await eventually(
      async () => (await docker.listContainers({filters: {label: [`${LABELS.deviceUuid}=${deviceUuid}`]}})).find((entry) => entry.State === 'running'),
      `the release running on the device\n${agentOutput}`,
      90_000,
    )
    assert.equal(container.Image, `${location}@${digest}`)
    await eventually(async () => (await docker.getContainer(container.Id).logs({stdout: true, stderr: true})).toString('utf8').includes(`built for ${fleet.slug}`), 'the service to print its build')
  })

  it("pulls a private FROM image with the push's registry secrets, and names the refusal without them", async () => {
    const privateFleet = await api.createFleet(admin, 'from-private', 'generic-amd64')
    const project = path.join(workDir, 'from-private')
    mkdirSync(project)
    writeFileSync(path.join(project, 'docker-compose.yml'), 'version: "2.1"\nservices:\n  main:\n    build: .\n')
    writeFileSync(path.join(project, 'Dockerfile'), `FROM ${otherLocation}:latest\nLABEL io.flotilla.test.from=private\n`)
    await docker.getImage(`${otherLocation}:latest`).remove().catch(() => undefined)
    const env = {HOME: home, FLOTILLA_URL: url, FLOTILLA_TOKEN: admin}

    const refused = await runCli(['push', privateFleet.slug, '--source', project], {env, timeoutMs: 120_000})
    assert.notEqual(refused.exitCode, 0)
    assert.match(refused.stderr, /unauthorized|denied|authentication required|no basic auth credentials/i)

    const secrets = path.join(workDir, 'registry-secrets.yml')
    writeFileSync(secrets, `'${registry}':\n  username: admin\n  password: ${admin}\n`)
    const pushed = await runCli(['push', privateFleet.slug, '--source', project, '--registry-secrets', secrets], {env, timeoutMs: 120_000})
    assert.equal(pushed.exitCode, 0, pushed.stderr)
  })
})
