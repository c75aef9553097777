import {strict as assert} from 'node:assert'

import type {Variable} from '../../src/sdk/variables.js'
import {type CliResult, makeCliHome, runCli} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

const DEVICE_UUID = 'c0ffee'.padEnd(32, '5')

/** A person using the CLI: their own home (credentials), talking to one server. */
class CliUser {
  readonly home = makeCliHome()
  constructor(private readonly server: TestServer) {}

  run(args: string[], input?: string): Promise<CliResult> {
    return runCli(args, {input, env: {HOME: this.home, FLOTILLA_URL: this.server.url}})
  }

  async ok(args: string[], input?: string): Promise<string> {
    const result = await this.run(args, input)
    assert.equal(result.exitCode, 0, `flotilla ${args.join(' ')} failed: ${result.stderr}`)
    return result.stdout
  }

  async json<T>(args: string[]): Promise<T> {
    return JSON.parse(await this.ok([...args, '--json'])) as T
  }

  async fails(args: string[], pattern: RegExp, exitCode = 1): Promise<void> {
    const result = await this.run(args)
    assert.equal(result.exitCode, exitCode, `flotilla ${args.join(' ')} should exit ${exitCode}: ${result.stdout} ${result.stderr}`)
    assert.match(result.stderr, pattern)
    assert.equal(result.stderr.trim().split('\n').length, 1, `one line of error expected, got: ${result.stderr}`)
  }
}

describe('service variables through the CLI against the real server', function () {
  this.timeout(120_000)
  let server: TestServer
  let api: FleetApi
  let alice: CliUser
  let bob: CliUser
  let token: string
  let deviceKey: string

  const mainEnvironment = async () => {
    const answer = await api.call('GET', `/device/v3/${DEVICE_UUID}/state`, {token: deviceKey})
    assert.equal(answer.status, 200, answer.body)
    const [app] = Object.values(answer.json()[DEVICE_UUID].apps) as Array<{releases: Record<string, {services: Record<string, {environment: Record<string, string>}>}>}>
    const [release] = Object.values(app.releases)
    return release.services.main.environment
  }

  const listed = (args: string[]) => alice.json<Variable[]>(['env', 'list', ...args])
  const idOf = (variables: Variable[], name: string, service: string | null, device: string | null) => {
    const found = variables.find((variable) => variable.name === name && variable.service === service && variable.device === device)
    assert.ok(found, `${name} of ${service ?? '*'} on ${device ?? '*'} in ${JSON.stringify(variables)}`)
    return found.id
  }

  before(async () => {
    server = await startServer()
    await server.addUser({email: 'bob@example.com', username: 'bob', password: 'bob-password-1'})
    api = new FleetApi(server.url)
    alice = new CliUser(server)
    bob = new CliUser(server)
    await alice.ok(['login', '--credentials', '--email', server.admin.email, '--password', '-'], server.admin.password)
    await bob.ok(['login', '--credentials', '--email', 'bob@example.com', '--password', '-'], 'bob-password-1')
    token = await api.login(server.admin.username, server.admin.password)
    const fleet = await api.createFleet(token, 'orchard')
    await api.createRelease(token, fleet.id, 'e'.repeat(32))
    await api.created(token, 'service', {application: fleet.id, service_name: 'side'})
    deviceKey = (await api.registerDevice(token, fleet.id, DEVICE_UUID)).api_key
  })

  after(async () => {
    await server?.stop()
  })

  it('sets fleet-service and device-service variables and merges them into the target state lowest first', async () => {
    const sets = [
      ['FLEET_ONLY', 'f', '--fleet', 'orchard'],
      ['LEVEL', 'fleet', '--fleet', 'orchard'],
      ['SERVICE_OVER_FLEET', 'fleet', '--fleet', 'orchard'],
      ['SERVICE_OVER_FLEET', 'service', '--fleet', 'orchard', '--service', 'main'],
      ['DEVICE_OVER_SERVICE', 'service', '--fleet', 'orchard', '--service', 'main'],
      ['LEVEL', 'service', '--fleet', 'orchard', '--service', 'main'],
      ['SIDE_ONLY', 'side', '--fleet', 'orchard', '--service', 'side'],
      ['DEVICE_OVER_SERVICE', 'device', '--device', DEVICE_UUID],
      ['DEVICE_SERVICE_OVER_DEVICE', 'device', '--device', DEVICE_UUID],
      ['LEVEL', 'device', '--device', DEVICE_UUID],
      ['DEVICE_SERVICE_OVER_DEVICE', 'device-service', '--device', DEVICE_UUID.slice(0, 7), '--service', 'main'],
      ['LEVEL', 'first', '--device', DEVICE_UUID, '--service', 'main'],
      ['LEVEL', 'device-service', '--device', DEVICE_UUID, '--service', 'main'],
    ]
    for (const [name, value, ...flags] of sets) await alice.ok(['env', 'set', name, value, ...flags])
    assert.deepEqual(await mainEnvironment(), {
      FLEET_ONLY: 'f',
      SERVICE_OVER_FLEET: 'service',
      DEVICE_OVER_SERVICE: 'device',
      DEVICE_SERVICE_OVER_DEVICE: 'device-service',
      LEVEL: 'device-service',
    })
  })

  it('lists service variables with a SERVICE column, * meaning all services, as balena-cli does', async () => {
    const fleetVars = await listed(['--fleet', 'orchard'])
    assert.deepEqual(
      fleetVars.map(({name, value, service, device}) => [name, value, service, device]),
      [
        ['DEVICE_OVER_SERVICE', 'service', 'main', null],
        ['FLEET_ONLY', 'f', null, null],
        ['LEVEL', 'fleet', null, null],
        ['LEVEL', 'service', 'main', null],
        ['SERVICE_OVER_FLEET', 'fleet', null, null],
        ['SERVICE_OVER_FLEET', 'service', 'main', null],
        ['SIDE_ONLY', 'side', 'side', null],
      ],
    )
    const table = await alice.ok(['env', 'list', '--fleet', 'orchard'])
    assert.match(table, /ID\s+NAME\s+VALUE\s+FLEET\s+SERVICE/)
    assert.match(table, /FLEET_ONLY\s+f\s+admin\/orchard\s+\*/)
    assert.match(table, /SIDE_ONLY\s+side\s+admin\/orchard\s+side/)
    const mainOnly = await listed(['--fleet', 'orchard', '--service', 'main'])
    assert.ok(!mainOnly.some((variable) => variable.name === 'SIDE_ONLY'))

    const deviceVars = await listed(['--device', DEVICE_UUID])
    assert.deepEqual(
      deviceVars.map(({name, value, service, device}) => [name, value, service, device && 'device']),
      [
        ['DEVICE_OVER_SERVICE', 'device', null, 'device'],
        ['DEVICE_SERVICE_OVER_DEVICE', 'device', null, 'device'],
        ['DEVICE_SERVICE_OVER_DEVICE', 'device-service', 'main', 'device'],
        ['FLEET_ONLY', 'f', null, null],
        ['LEVEL', 'device', null, 'device'],
        ['LEVEL', 'device-service', 'main', 'device'],
        ['SERVICE_OVER_FLEET', 'fleet', null, null],
        ['SERVICE_OVER_FLEET', 'service', 'main', null],
        ['SIDE_ONLY', 'side', 'side', null],
      ],
    )
    const deviceTable = await alice.ok(['env', 'list', '--device', DEVICE_UUID])
    assert.match(deviceTable, /FLEET\s+DEVICE\s+SERVICE/)
    assert.match(deviceTable, new RegExp(`LEVEL\\s+device-service\\s+admin/orchard\\s+${DEVICE_UUID.slice(0, 7)}\\s+main`))
    assert.match(deviceTable, /FLEET_ONLY\s+f\s+admin\/orchard\s+\*\s+\*/)
  })

  it('refuses an unknown service naming the services of the fleet, and config names per service', async () => {
    await alice.fails(['env', 'set', 'X', '1', '--fleet', 'orchard', '--service', 'nope'], /service "nope" not found in fleet admin\/orchard — its services are main, side/)
    await alice.fails(['env', 'set', 'X', '1', '--device', DEVICE_UUID, '--service', 'nope'], /its services are main, side/)
    await alice.fails(['env', 'list', '--fleet', 'orchard', '--service', 'nope'], /its services are main, side/)
    await alice.fails(['env', 'set', 'BALENA_SUPERVISOR_POLL_INTERVAL', '1', '--fleet', 'orchard', '--service', 'main'], /cannot be set per service/, 2)
  })

  it('keeps them from another organization', async () => {
    const mine = await listed(['--device', DEVICE_UUID])
    const serviceVariable = idOf(mine, 'SIDE_ONLY', 'side', null)
    const deviceServiceVariable = idOf(mine, 'LEVEL', 'main', DEVICE_UUID)
    await bob.fails(['env', 'list', '--fleet', 'admin/orchard'], /not found/)
    await bob.fails(['env', 'set', 'X', '1', '--device', DEVICE_UUID, '--service', 'main'], /not found/)
    await bob.fails(['env', 'rm', String(serviceVariable), '--service', 'side', '--yes'], /not found/)
    await bob.fails(['env', 'rm', String(deviceServiceVariable), '--service', 'main', '--yes'], /not found/)
    const bobToken = await api.login('bob', 'bob-password-1')
    for (const resource of ['service_environment_variable', 'device_service_environment_variable', 'service_install']) {
      const answer = await api.call('GET', `/v7/${resource}`, {token: bobToken})
      assert.deepEqual(answer.json(), {d: []}, resource)
    }

    const service = (await api.call('GET', "/v7/service?$select=id&$filter=service_name eq 'main'", {token})).json().d[0].id
    const install = (await api.call('GET', `/v7/service_install?$select=id&$filter=installs__service eq ${service}`, {token})).json().d[0].id
    assert.equal((await api.call('POST', '/v7/service_environment_variable', {token: bobToken, json: {service, name: 'EVIL', value: '1'}})).status, 401)
    assert.equal((await api.call('POST', '/v7/device_service_environment_variable', {token: bobToken, json: {service_install: install, name: 'EVIL', value: '1'}})).status, 401)
    assert.equal((await api.call('PATCH', `/v7/service_environment_variable(${serviceVariable})`, {token: bobToken, json: {value: 'evil'}})).status, 200)
    assert.equal((await api.call('DELETE', `/v7/device_service_environment_variable(${deviceServiceVariable})`, {token: bobToken})).status, 200)
    assert.deepEqual(await listed(['--device', DEVICE_UUID]), mine, 'nothing changed')
  })

  it('removes them by name or by ID from the right resource, and the target state follows', async () => {
    await alice.fails(['env', 'rm', 'LEVEL', '--device', DEVICE_UUID, '--service', 'main'], /--yes/, 2)
    await alice.ok(['env', 'rm', 'LEVEL', '--device', DEVICE_UUID, '--service', 'main', '--yes'])
    await alice.fails(['env', 'rm', 'LEVEL', '--device', DEVICE_UUID, '--service', 'main', '--yes'], /variable "LEVEL" not found/)
    assert.equal((await mainEnvironment()).LEVEL, 'device')

    const fleetVars = await listed(['--fleet', 'orchard'])
    await alice.ok(['env', 'rm', String(idOf(fleetVars, 'SIDE_ONLY', 'side', null)), '--service', 'side', '--yes'])
    await alice.ok(['env', 'rm', String(idOf(fleetVars, 'LEVEL', 'main', null)), '--fleet', 'orchard', '--service', 'main', '--yes'])
    const deviceVars = await listed(['--device', DEVICE_UUID])
    const deviceService = idOf(deviceVars, 'DEVICE_SERVICE_OVER_DEVICE', 'main', DEVICE_UUID)
    await alice.fails(['env', 'rm', String(deviceService), '--device', DEVICE_UUID, '--service', 'side', '--yes'], /not found/)
    await alice.ok(['env', 'rm', String(deviceService), '--device', DEVICE_UUID, '--service', 'main', '--yes'])
    await alice.ok(['env', 'rm', String(idOf(deviceVars, 'LEVEL', null, DEVICE_UUID)), '--device', DEVICE_UUID, '--yes'])
    await alice.ok(['env', 'rm', String(idOf(fleetVars, 'FLEET_ONLY', null, null)), '--yes'])
    assert.deepEqual(await mainEnvironment(), {SERVICE_OVER_FLEET: 'service', DEVICE_OVER_SERVICE: 'device', DEVICE_SERVICE_OVER_DEVICE: 'device', LEVEL: 'fleet'})
    const left = await listed(['--fleet', 'orchard'])
    assert.ok(!left.some((variable) => variable.name === 'SIDE_ONLY' || variable.name === 'FLEET_ONLY'))
  })
})
