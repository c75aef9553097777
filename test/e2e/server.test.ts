import {strict as assert} from 'node:assert'
import {spawn} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import got, {type Method} from 'got'

import {CLI_BIN, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {startServer, type TestServer} from '../helpers/server.js'

interface Answer {
  status: number
  body: string
  json: () => any // eslint-disable-line @typescript-eslint/no-explicit-any
  headers: Record<string, string | string[] | undefined>
}

const DEVICE_UUID = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'
const OTHER_UUID = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'
const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test@host'

describe('flotilla server (real binary, over HTTP)', function () {
  this.timeout(60_000)
  let server: TestServer

  before(async () => {
    server = await startServer()
  })

  after(async () => {
    await server?.stop()
  })

  async function call(method: Method, url: string, options: {token?: string; json?: unknown} = {}): Promise<Answer> {
    const response = await got(`${server.url}${url}`, {
      method,
      json: options.json,
      headers: options.token ? {authorization: `Bearer ${options.token}`} : {},
      throwHttpErrors: false,
      retry: {limit: 0},
    })
    return {status: response.statusCode, body: response.body, json: () => JSON.parse(response.body), headers: response.headers}
  }

  async function login(username: string, password: string): Promise<string> {
    const answer = await call('POST', '/login_', {json: {username, password}})
    assert.equal(answer.status, 200, answer.body)
    return answer.body
  }

  async function deviceTypeId(slug: string): Promise<number> {
    return (await call('GET', `/v7/device_type?$select=id&$filter=slug eq '${slug}'`)).json().d[0].id
  }

  async function personalOrganization(token: string): Promise<number> {
    return (await call('GET', '/v7/organization?$select=id', {token})).json().d[0].id
  }

  async function createFleet(token: string, name: string): Promise<{id: number; slug: string}> {
    const answer = await call('POST', '/v7/application', {token, json: {app_name: name, organization: await personalOrganization(token), is_for__device_type: await deviceTypeId('raspberrypi4-64')}})
    assert.equal(answer.status, 201, answer.body)
    return answer.json()
  }

  async function provisioningKey(token: string, fleetId: number): Promise<string> {
    const answer = await call('POST', `/api-key/application/${fleetId}/provisioning`, {token, json: {name: 'provisioning'}})
    assert.equal(answer.status, 200, answer.body)
    return answer.json()
  }

  it('answers ping and tells its endpoints', async () => {
    const ping = await call('GET', '/ping')
    assert.equal(ping.status, 200)
    assert.equal(ping.body, 'OK')
    const wellKnown = (await call('GET', '/.well-known/flotilla.json')).json()
    assert.deepEqual(wellKnown, {api: server.url, builder: server.url, ssh: {host: '127.0.0.1', port: server.sshPort, hostKey: wellKnown.ssh.hostKey}, tunnel: server.url, registry: null, version: wellKnown.version})
    assert.match(wellKnown.ssh.hostKey, /^ssh-ed25519 [\w+/]+=*$/)
    assert.match(wellKnown.version, /^\d+\.\d+\.\d+/)
  })

  it('lists device types and the rules of variable names', async () => {
    const types = (await call('GET', '/device-types/v1')).json()
    const pi4 = types.find((type: {slug: string}) => type.slug === 'raspberrypi4-64')
    assert.deepEqual([pi4.arch, typeof pi4.name, Array.isArray(pi4.aliases), typeof pi4.yocto.deployArtifact], ['aarch64', 'string', true, 'string'])
    assert.deepEqual(types.find((type: {slug: string}) => type.slug === 'raspberry-pi').aliases, ['rpi'])
    const rows = (await call('GET', "/v7/device_type?$select=slug&$filter=is_of__cpu_architecture/slug eq 'amd64'&$orderby=slug asc")).json().d
    assert.deepEqual(rows.map((row: {slug: string}) => row.slug), ['generic-amd64', 'genericx86-64-ext', 'intel-nuc', 'qemux86-64'])
    const vars = (await call('GET', '/config/vars')).json()
    assert.deepEqual(Object.keys(vars).sort(), ['blackListedNames', 'configVarSchema', 'invalidRegex', 'reservedNames', 'reservedNamespaces', 'whiteListedNames', 'whiteListedNamespaces'])
  })

  it('logs in with the right password only, and whoami tells who', async () => {
    const token = await login(server.admin.email, server.admin.password)
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/)
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'))
    assert.deepEqual(Object.keys(claims).sort(), ['authTime', 'exp', 'iat', 'id', 'jwt_secret'])
    const bad = await call('POST', '/login_', {json: {username: server.admin.username, password: 'wrong password'}})
    assert.equal(bad.status, 401)
    assert.equal(bad.body, '')
    const user = (await call('GET', '/user/v1/whoami', {token})).json()
    assert.deepEqual(user, {id: user.id, username: 'admin', email: server.admin.email})
    const actor = (await call('GET', '/actor/v1/whoami', {token})).json()
    assert.equal(actor.actorType, 'user')
    assert.equal(actor.actorTypeId, user.id)
    const refreshed = await call('GET', '/user/v1/refresh-token', {token})
    assert.equal(refreshed.status, 200)
    assert.equal((await call('GET', '/user/v1/whoami', {token: refreshed.body})).status, 200)
    assert.equal((await call('GET', '/user/v1/whoami')).status, 401)
    assert.equal((await call('GET', '/user/v1/whoami', {token: 'not-a-real-key-0123456789abcdef'})).status, 401)
  })

  it('rate limits failed logins per IP and username', async () => {
    let answer: Answer | undefined
    for (let attempt = 0; attempt < 11; attempt++) answer = await call('POST', '/login_', {json: {username: 'nobody-here', password: 'guess'}})
    assert.equal(answer?.status, 429)
    assert.ok(Number(answer?.headers['retry-after']) > 0)
    assert.equal((await call('POST', '/login_', {json: {username: server.admin.username, password: server.admin.password}})).status, 200)
  })

  it('accepts API keys as Bearer and ?apikey=, and refuses them once revoked or expired', async () => {
    const token = await login(server.admin.username, server.admin.password)
    const created = await call('POST', '/api-key/user/full', {token, json: {name: 'ci', description: 'for tests', expiryDate: null}})
    assert.equal(created.status, 200, created.body)
    const key: string = created.json()
    assert.match(key, /^[A-Za-z0-9]{32}$/)
    assert.equal((await call('GET', '/user/v1/whoami', {token: key})).json().username, 'admin')
    assert.equal((await call('GET', `/actor/v1/whoami?apikey=${key}`)).json().actorType, 'user')

    const keys = (await call('GET', '/v7/api_key', {token})).json().d
    const listed = keys.find((row: {name: string}) => row.name === 'ci')
    assert.deepEqual(Object.keys(listed).sort(), ['created_at', 'description', 'expiry_date', 'id', 'is_of__actor', 'name'])
    assert.equal((await call('DELETE', `/v7/api_key(${listed.id})`, {token})).status, 200)
    assert.equal((await call('GET', '/user/v1/whoami', {token: key})).status, 401)

    const expired: string = (await call('POST', '/api-key/user/full', {token, json: {name: 'old', expiryDate: '2000-01-01T00:00:00.000Z'}})).json()
    assert.equal((await call('GET', '/user/v1/whoami', {token: expired})).status, 401)
    assert.equal((await call('POST', '/api-key/user/full', {token: key, json: {name: 'from a key'}})).status, 401)
  })

  it('creates fleets, refuses a duplicate name with 409 and a bad one with 400', async () => {
    const token = await login(server.admin.username, server.admin.password)
    const fleet = await createFleet(token, 'Garden')
    assert.equal(fleet.slug, 'admin/garden')
    const duplicate = await call('POST', '/v7/application', {token, json: {app_name: 'garden', organization: await personalOrganization(token), is_for__device_type: await deviceTypeId('raspberrypi3')}})
    assert.equal(duplicate.status, 409)
    assert.match(duplicate.json(), /unique/i)
    const invalid = await call('POST', '/v7/application', {token, json: {app_name: 'bad name', organization: await personalOrganization(token), is_for__device_type: 1}})
    assert.equal(invalid.status, 400)
    assert.match(invalid.json(), /app_name/)
    assert.equal((await call('PATCH', `/v7/application(${fleet.id})`, {token, json: {app_name: 'Orchard'}})).status, 200)
    assert.equal((await call('GET', `/v7/application(${fleet.id})?$select=slug`, {token})).json().d[0].slug, 'admin/orchard')
  })

  it('registers devices with a provisioning key, once per uuid', async () => {
    const token = await login(server.admin.username, server.admin.password)
    const fleet = await createFleet(token, 'sensors')
    const key = await provisioningKey(token, fleet.id)
    const registered = await call('POST', '/device/register', {token: key, json: {application: fleet.id, device_type: 'raspberrypi4-64', uuid: DEVICE_UUID}})
    assert.equal(registered.status, 201, registered.body)
    const device = registered.json()
    assert.equal(device.uuid, DEVICE_UUID)
    assert.match(device.api_key, /^[A-Za-z0-9]{32}$/)
    const duplicate = await call('POST', '/device/register', {token: key, json: {application: fleet.id, device_type: 'raspberrypi4-64', uuid: DEVICE_UUID}})
    assert.equal(duplicate.status, 409)
    assert.equal(duplicate.body, '"uuid" must be unique.')

    const other = await createFleet(token, 'elsewhere')
    assert.equal((await call('POST', '/device/register', {token: key, json: {application: other.id, device_type: 'raspberrypi4-64', uuid: OTHER_UUID}})).status, 401)
    assert.deepEqual((await call('GET', '/v7/device', {token: key})).json().d, [])

    const asDevice = (await call('GET', '/actor/v1/whoami', {token: device.api_key})).json()
    assert.deepEqual([asDevice.actorType, asDevice.uuid], ['device', DEVICE_UUID])
    const seen = (await call('GET', `/v7/device?$select=uuid&$expand=belongs_to__application($select=slug)`, {token: device.api_key})).json().d
    assert.deepEqual(seen, [{uuid: DEVICE_UUID, belongs_to__application: [{slug: 'admin/sensors'}]}])
    assert.equal((await call('PATCH', `/v7/application(${fleet.id})`, {token: device.api_key, json: {app_name: 'hijacked'}})).status, 401)

    const listed = (await call('GET', `/v7/device(uuid='${DEVICE_UUID}')?$select=device_name,is_online,should_be_running__release`, {token})).json().d
    assert.deepEqual(listed, [{device_name: DEVICE_UUID.slice(0, 7), is_online: false, should_be_running__release: null}])
  })

  it('mints provisioning keys through /api-key/v2/ and device keys a fleet member chooses', async () => {
    const token = await login(server.admin.username, server.admin.password)
    const fleet = await createFleet(token, 'keyed')
    const v2 = await call('POST', '/api-key/v2/', {token, json: {actorType: 'application', actorTypeId: fleet.id, roles: ['provisioning-api-key'], name: 'v2', description: null, expiryDate: null}})
    assert.equal(v2.status, 200, v2.body)
    const registered = (await call('POST', '/device/register', {token: v2.json(), json: {application: fleet.id, device_type: 'rpi', uuid: OTHER_UUID}})).json()
    const chosen = 'chosenDeviceKey0123456789abcdefg'
    const deviceKey = await call('POST', `/api-key/device/${registered.id}/device-key`, {token, json: {apiKey: chosen}})
    assert.equal(deviceKey.json(), chosen)
    assert.equal((await call('GET', '/actor/v1/whoami', {token: chosen})).json().uuid, OTHER_UUID)
    assert.equal((await call('POST', '/api-key/v2/', {token, json: {actorType: 'device', actorTypeId: registered.id, roles: ['nonsense']}})).status, 400)
  })

  it('upserts environment variables: POST, 409 on the same name, then PATCH', async () => {
    const token = await login(server.admin.username, server.admin.password)
    const fleet = await createFleet(token, 'envfleet')
    const first = await call('POST', '/v7/application_environment_variable', {token, json: {application: fleet.id, name: 'MODE', value: 'one'}})
    assert.equal(first.status, 201, first.body)
    assert.equal(first.json().value, 'one')
    const again = await call('POST', '/v7/application_environment_variable', {token, json: {application: fleet.id, name: 'MODE', value: 'two'}})
    assert.equal(again.status, 409)
    assert.match(again.json(), /unique/i)
    const patched = await call('PATCH', `/v7/application_environment_variable?$filter=application eq ${fleet.id} and name eq 'MODE'`, {token, json: {value: 'two'}})
    assert.equal(patched.status, 200)
    assert.equal(patched.body, '')
    const rows = (await call('GET', `/v7/application_environment_variable?$select=name,value&$filter=application eq ${fleet.id}`, {token})).json().d
    assert.deepEqual(rows, [{name: 'MODE', value: 'two'}])
    assert.equal((await call('POST', '/v7/application_environment_variable', {token, json: {application: fleet.id, name: '1BAD', value: 'x'}})).status, 400)
    assert.equal((await call('POST', '/v7/application_config_variable', {token, json: {application: fleet.id, name: 'MODE', value: 'x'}})).status, 400)
    assert.equal((await call('POST', '/v7/application_config_variable', {token, json: {application: fleet.id, name: 'BALENA_HOST_CONFIG_gpu_mem', value: '16'}})).status, 201)
  })

  it("answers malformed OData with pinejs's 400 Malformed url and unknown resources with 404", async () => {
    const token = await login(server.admin.username, server.admin.password)
    const malformed = await call('GET', '/v7/device?$filter=uuid eq', {token})
    assert.equal(malformed.status, 400)
    assert.equal(malformed.json(), "Malformed url: '/v7/device?$filter=uuid%20eq'")
    // The raw URL is parsed, as pinejs parses it: OData's own characters percent-encoded are refused, not decoded away.
    assert.equal((await call('GET', "/v7/device?$select=id,uuid&$filter=startswith(uuid,'0')", {token})).status, 200)
    for (const url of ['/v7/device?$select=id%2Cuuid', '/v7/device?$filter=startswith%28uuid,%270%27)', '/v7/device?$filter=startswith(uuid%2C%270%27)', '/v7/device(uuid%3D%270%27)']) {
      const refused = await call('GET', url, {token})
      assert.deepEqual([refused.status, refused.json()], [400, `Malformed url: '${url}'`])
    }

    assert.equal((await call('GET', '/v7/device?$filter=no_such_field eq 1', {token})).status, 400)
    assert.equal((await call('GET', '/v7/no_such_resource', {token})).status, 404)
    assert.equal((await call('GET', '/v7/device')).status, 401)
  })

  describe('two organizations', () => {
    const alice = {email: 'alice@example.com', username: 'alice', password: 'alice-password'}
    const bob = {email: 'bob@example.com', username: 'bob', password: 'bob-password'}
    let aliceToken: string
    let bobToken: string
    let aliceFleet: {id: number; slug: string}
    let aliceDevice: {id: number; uuid: string}

    before(async () => {
      await server.addUser(alice)
      await server.addUser(bob)
      aliceToken = await login('alice', alice.password)
      bobToken = await login('bob@example.com', bob.password)
      aliceFleet = await createFleet(aliceToken, 'secret-fleet')
      await createFleet(bobToken, 'bobs-fleet')
      aliceDevice = (await call('POST', '/device/register', {token: await provisioningKey(aliceToken, aliceFleet.id), json: {application: aliceFleet.id, device_type: 'raspberrypi4-64', uuid: 'cccccccccccccccccccccccccccccccc'}})).json()
      for (const [resource, body] of [
        ['application_environment_variable', {application: aliceFleet.id, name: 'SECRET', value: 's3cret'}],
        ['device_environment_variable', {device: aliceDevice.id, name: 'SECRET', value: 's3cret'}],
        ['application_tag', {application: aliceFleet.id, tag_key: 'owner', value: 'alice'}],
        ['device_tag', {device: aliceDevice.id, tag_key: 'room', value: 'attic'}],
        ['user__has__public_key', {user: (await call('GET', '/user/v1/whoami', {token: aliceToken})).json().id, title: 'laptop', public_key: SSH_KEY}],
      ] as const) {
        const created = await call('POST', `/v7/${resource}`, {token: aliceToken, json: body})
        assert.equal(created.status, 201, `${resource}: ${created.body}`)
      }

      assert.equal((await call('POST', '/api-key/user/full', {token: aliceToken, json: {name: 'alice key'}})).status, 200)
    })

    it('lets each user see only their own organization', async () => {
      assert.deepEqual((await call('GET', '/v7/organization?$select=handle', {token: bobToken})).json().d, [{handle: 'bob'}])
      assert.deepEqual((await call('GET', '/v7/application?$select=slug', {token: bobToken})).json().d, [{slug: 'bob/bobs-fleet'}])
      assert.deepEqual((await call('GET', '/v7/user?$select=username', {token: bobToken})).json().d, [{username: 'bob'}])
      assert.deepEqual((await call('GET', '/v7/application?$select=slug', {token: aliceToken})).json().d, [{slug: 'alice/secret-fleet'}])
    })

    it('hides another organization everywhere: by key, filter, navigation path, any(), $expand and $count', async () => {
      const empty = [
        `/v7/application(${aliceFleet.id})`,
        `/v7/application?$filter=slug eq '${aliceFleet.slug}'`,
        `/v7/device(uuid='${aliceDevice.uuid}')`,
        `/v7/device?$filter=belongs_to__application/slug eq '${aliceFleet.slug}'`,
        '/v7/application_environment_variable',
        '/v7/device_environment_variable',
        '/v7/application_tag',
        '/v7/device_tag',
        '/v7/user__has__public_key',
        `/v7/device_type?$filter=describes__device/any(d:d/uuid eq '${aliceDevice.uuid}')`,
        `/v7/organization?$filter=application/any(a:a/app_name eq 'secret-fleet')`,
      ]
      for (const url of empty) assert.deepEqual((await call('GET', url, {token: bobToken})).json().d, [], url)

      const keys = (await call('GET', '/v7/api_key?$select=name', {token: bobToken})).json().d
      assert.deepEqual(keys, [])
      const viaExpand = (await call('GET', `/v7/device_type(slug='raspberrypi4-64')?$select=slug&$expand=describes__device($select=uuid)`, {token: bobToken})).json().d
      assert.deepEqual(viaExpand, [{slug: 'raspberrypi4-64', describes__device: []}])
      const counted = (await call('GET', `/v7/device_type(slug='raspberrypi4-64')?$select=slug&$expand=describes__device/$count`, {token: bobToken})).json().d
      assert.deepEqual(counted, [{slug: 'raspberrypi4-64', describes__device: 0}])
      assert.equal((await call('GET', '/v7/device/$count', {token: bobToken})).json().d, 0)
      const aliceSees = (await call('GET', `/v7/device_type(slug='raspberrypi4-64')?$select=slug&$expand=describes__device/$count`, {token: aliceToken})).json().d
      assert.deepEqual(aliceSees, [{slug: 'raspberrypi4-64', describes__device: 1}])
    })

    it('refuses writes into or over another organization', async () => {
      const intoAlice = await call('POST', '/v7/device', {token: bobToken, json: {belongs_to__application: aliceFleet.id, is_of__device_type: await deviceTypeId('raspberrypi4-64'), uuid: 'dddddddddddddddddddddddddddddddd'}})
      assert.equal(intoAlice.status, 401)
      assert.equal((await call('POST', '/v7/application_environment_variable', {token: bobToken, json: {application: aliceFleet.id, name: 'X', value: '1'}})).status, 401)
      assert.equal((await call('POST', `/api-key/application/${aliceFleet.id}/provisioning`, {token: bobToken, json: {}})).status, 401)
      await call('PATCH', `/v7/device(${aliceDevice.id})`, {token: bobToken, json: {device_name: 'pwned'}})
      await call('DELETE', `/v7/application(${aliceFleet.id})`, {token: bobToken})
      const device = (await call('GET', `/v7/device(${aliceDevice.id})?$select=device_name`, {token: aliceToken})).json().d
      assert.notEqual(device[0].device_name, 'pwned')
      assert.equal((await call('GET', `/v7/application(${aliceFleet.id})`, {token: aliceToken})).json().d.length, 1)
      const bobsFleet = (await call('GET', '/v7/application?$select=id', {token: bobToken})).json().d[0]
      const moved = await call('PATCH', `/v7/device(${aliceDevice.id})`, {token: aliceToken, json: {belongs_to__application: bobsFleet.id}})
      assert.equal(moved.status, 401)
    })

    it('adds a user into an existing organization', async () => {
      const carol = {email: 'carol@example.com', username: 'carol', password: 'carol-password', organization: 'alice'}
      await server.addUser(carol)
      const token = await login('carol', carol.password)
      const slugs = (await call('GET', '/v7/application?$select=slug&$orderby=slug asc', {token})).json().d.map((row: {slug: string}) => row.slug)
      assert.deepEqual(slugs, ['alice/secret-fleet'])
      const users = (await call('GET', `/v7/application(${aliceFleet.id})?$select=id&$expand=is_directly_accessible_by__user($select=username;$orderby=username asc)`, {token})).json().d
      assert.deepEqual(users[0].is_directly_accessible_by__user, [{username: 'alice'}, {username: 'carol'}])
    })
  })
})

describe('flotilla server commands', function () {
  this.timeout(60_000)
  let dataDir: string

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-server-cmd-'))
  })

  afterEach(() => rmSync(dataDir, {recursive: true, force: true}))

  it('server start prints one line, generates an admin password once, and exits 0 on SIGINT', async () => {
    const child = spawn(process.execPath, [CLI_BIN, 'server', 'start', '--port', '0', '--ssh-port', '0', '--data-dir', dataDir], {cwd: PROJECT_ROOT, env: {PATH: process.env.PATH, NO_COLOR: '1'}})
    let stdout = ''
    child.stdout.setEncoding('utf8')
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listening line: ${stdout}`)), 30_000)
      child.stdout.on('data', (chunk: string) => {
        stdout += chunk
        if (/listening on/.test(stdout)) {
          clearTimeout(timer)
          resolve()
        }
      })
    })
    const lines = stdout.trim().split('\n')
    assert.match(lines[0], /^created admin user "admin" with password: \S{20}$/)
    assert.match(lines[1], /^flotilla server listening on http:\/\/127\.0\.0\.1:\d+, SSH on port \d+$/)
    const password = lines[0].split(': ')[1]
    const url = lines[1].split(' on ')[1].split(',')[0]
    const login = await got.post(`${url}/login_`, {json: {username: 'admin', password}, throwHttpErrors: false})
    assert.equal(login.statusCode, 200)
    child.kill('SIGINT')
    assert.equal(await exited, 0)
  })

  it('server user add generates a password, and refuses a duplicate or an unknown organization', async () => {
    const added = await runCli(['server', 'user', 'add', '--email', 'dan@example.com', '--username', 'dan', '--data-dir', dataDir])
    assert.equal(added.exitCode, 0, added.stderr)
    assert.match(added.stdout, /^created user "dan" with password: \S{20}\n$/)
    const again = await runCli(['server', 'user', 'add', '--email', 'dan@example.com', '--username', 'dan', '--data-dir', dataDir])
    assert.equal(again.exitCode, 1)
    assert.match(again.stderr, /^error: .*already exists/)
    const unknown = await runCli(['server', 'user', 'add', '--email', 'eve@example.com', '--username', 'eve', '--organization', 'nowhere', '--password-stdin', '--data-dir', dataDir], {input: 'eve-password'})
    assert.equal(unknown.exitCode, 1)
    assert.match(unknown.stderr, /organization "nowhere" not found/)
  })
})
