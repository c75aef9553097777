import {strict as assert} from 'node:assert'
import {readFileSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {type CliResult, makeCliHome, runCli} from '../helpers/cli.js'
import {FleetApi} from '../helpers/fleet-api.js'
import {startServer, type TestServer} from '../helpers/server.js'

/** A person using the CLI: their own home (credentials), talking to one server. */
class CliUser {
  readonly home = makeCliHome()
  constructor(private readonly server: TestServer) {}

  run(args: string[], options: {input?: string; env?: NodeJS.ProcessEnv} = {}): Promise<CliResult> {
    return runCli(args, {input: options.input, env: {HOME: this.home, FLOTILLA_URL: this.server.url, ...options.env}})
  }

  async ok(args: string[], input?: string): Promise<string> {
    const result = await this.run(args, {input})
    assert.equal(result.exitCode, 0, `flotilla ${args.join(' ')} failed: ${result.stderr}`)
    return result.stdout
  }

  async json<T>(args: string[]): Promise<T> {
    return JSON.parse(await this.ok([...args, '--json'])) as T
  }

  async fails(args: string[], pattern: RegExp, exitCode = 1, input?: string): Promise<CliResult> {
    const result = await this.run(args, {input})
    assert.equal(result.exitCode, exitCode, `flotilla ${args.join(' ')} should exit ${exitCode}: ${result.stdout} ${result.stderr}`)
    assert.match(result.stderr, pattern)
    assert.equal(result.stderr.trim().split('\n').length, 1, `one line of error expected, got: ${result.stderr}`)
    return result
  }
}

describe('foundation commands against the real server', function () {
  this.timeout(120_000)
  let server: TestServer
  let alice: CliUser
  let bob: CliUser

  before(async () => {
    server = await startServer()
    await server.addUser({email: 'bob@example.com', username: 'bob', password: 'bob-password-1'})
    alice = new CliUser(server)
    bob = new CliUser(server)
  })

  after(async () => {
    await server?.stop()
  })

  describe('login', () => {
    it('refuses a wrong password, stores nothing, and says so in one line', async () => {
      await alice.fails(['login', '--credentials', '--email', server.admin.email, '--password', '-'], /wrong email\/username or password/, 1, 'not-the-password')
      const whoami = await alice.run(['whoami'])
      assert.equal(whoami.exitCode, 1)
      assert.match(whoami.stderr, /not logged in/)
    })

    it('logs in with credentials from stdin into a 0600 credentials file', async () => {
      await alice.ok(['login', '--credentials', '--email', server.admin.email, '--password', '-'], server.admin.password)
      const credentials = path.join(alice.home, '.config', 'flotilla', 'credentials.json')
      assert.equal(statSync(credentials).mode & 0o777, 0o600)
      assert.ok(!readFileSync(credentials, 'utf8').includes(server.admin.password))
      const me = await alice.json<{username: string; actorType: string}>(['whoami'])
      assert.equal(me.username, server.admin.username)
      assert.equal(me.actorType, 'user')
    })

    it('logs in with a token read from stdin, and FLOTILLA_TOKEN overrides the stored one', async () => {
      await bob.ok(['login', '--credentials', '--email', 'bob', '--password', '-'], 'bob-password-1')
      const key = (await bob.ok(['api-key', 'generate', 'ci'])).trim()
      assert.match(key, /^\w{32}$/)
      const other = new CliUser(server)
      await other.ok(['login', '--token', '-'], key)
      assert.equal((await other.json<{username: string}>(['whoami'])).username, 'bob')
      const viaEnv = await new CliUser(server).run(['whoami', '--json'], {env: {FLOTILLA_TOKEN: key}})
      assert.equal(JSON.parse(viaEnv.stdout).username, 'bob')
    })

    it('without a terminal and without a method, names the flags to use', async () => {
      await new CliUser(server).fails(['login'], /--token/, 2)
    })

    it('reports a server that is not running', async () => {
      const nowhere = await runCli(['fleet', 'list'], {env: {HOME: alice.home, FLOTILLA_URL: 'http://127.0.0.1:9', FLOTILLA_TOKEN: 'x'.repeat(32)}})
      assert.equal(nowhere.exitCode, 1)
      assert.match(nowhere.stderr, /cannot reach the fleet server at http:\/\/127\.0\.0\.1:9/)
    })
  })

  describe('fleets', () => {
    it('creates, lists, shows and renames a fleet', async () => {
      const created = await alice.json<{slug: string; device_type: string}>(['fleet', 'create', 'garden', '--type', 'raspberrypi4-64'])
      assert.equal(created.slug, `${server.admin.username}/garden`)
      assert.equal(created.device_type, 'raspberrypi4-64')
      const table = await alice.ok(['fleets'])
      assert.match(table, /^ID\s+NAME\s+SLUG\s+DEVICE TYPE/m)
      assert.match(table, /garden\s+admin\/garden\s+raspberrypi4-64/)
      const shown = await alice.json<{app_name: string}>(['fleet', 'garden'])
      assert.equal(shown.app_name, 'garden')
      await alice.ok(['fleet', 'rename', 'garden', 'orchard'])
      const fleets = await alice.json<Array<{app_name: string}>>(['fleet', 'list'])
      assert.deepEqual(fleets.map((fleet) => fleet.app_name), ['orchard'])
    })

    it('refuses a duplicate name, an invalid device type and an unknown fleet, changing nothing', async () => {
      await alice.fails(['fleet', 'create', 'orchard', '--type', 'raspberrypi4-64'], /already exists/)
      await alice.fails(['fleet', 'create', 'pond', '--type', 'toaster'], /invalid device type "toaster"/, 2)
      await alice.fails(['fleet', 'nosuchfleet'], /fleet "nosuchfleet" not found/)
      const fleets = await alice.json<Array<{app_name: string}>>(['fleet', 'list'])
      assert.deepEqual(fleets.map((fleet) => fleet.app_name), ['orchard'])
    })

    it('needs --yes to remove a fleet without a terminal', async () => {
      await alice.ok(['fleet', 'create', 'scratch', '--type', 'intel-nuc'])
      await alice.fails(['fleet', 'rm', 'scratch'], /--yes/, 2)
      assert.equal((await alice.json<unknown[]>(['fleet', 'list'])).length, 2)
      await alice.ok(['fleet', 'rm', 'scratch', '--yes'])
      assert.equal((await alice.json<unknown[]>(['fleet', 'list'])).length, 1)
    })
  })

  describe('devices', () => {
    let uuid: string

    it('registers a device and finds it by a short UUID', async () => {
      const device = await alice.json<{uuid: string; fleet: string; device_type: string}>(['device', 'register', 'orchard'])
      uuid = device.uuid
      assert.match(uuid, /^[\da-f]{32}$/)
      assert.equal(device.fleet, 'admin/orchard')
      assert.equal(device.device_type, 'raspberrypi4-64')
      const shown = await alice.json<{uuid: string}>(['device', uuid.slice(0, 7)])
      assert.equal(shown.uuid, uuid)
      const listed = await alice.json<Array<{uuid: string; is_online: boolean}>>(['devices', '--fleet', 'orchard'])
      assert.deepEqual(listed.map((entry) => entry.uuid), [uuid])
      assert.equal(listed[0].is_online, false)
    })

    it('refuses a duplicate UUID and a too short one', async () => {
      await alice.fails(['device', 'register', 'orchard', '--uuid', uuid], /already registered/, 2)
      await alice.fails(['device', 'abc'], /at least its first 7 characters/, 2)
      await alice.fails(['device', '0000000'], /device "0000000" not found/)
    })

    it('renames and moves a device', async () => {
      await alice.ok(['device', 'rename', uuid, 'apple-tree'])
      await alice.ok(['fleet', 'create', 'greenhouse', '--type', 'raspberrypi4-64'])
      const moved = await alice.json<{fleet: string; device_name: string}>(['device', 'move', uuid, '--fleet', 'greenhouse'])
      assert.equal(moved.fleet, 'admin/greenhouse')
      assert.equal(moved.device_name, 'apple-tree')
      const table = await alice.ok(['device', 'list'])
      assert.match(table, new RegExp(`${uuid.slice(0, 7)}\\s+apple-tree\\s+raspberrypi4-64\\s+admin/greenhouse`))
    })

    it('sets, lists and removes environment variables, with device values over inherited fleet ones', async () => {
      await alice.ok(['env', 'set', 'LEVEL', 'info', '--fleet', 'greenhouse'])
      await alice.ok(['env', 'set', 'COLOUR', 'green', '--fleet', 'greenhouse'])
      await alice.ok(['env', 'set', 'LEVEL', 'debug', '--device', uuid])
      await alice.ok(['env', 'set', 'LEVEL', 'debug', '--device', uuid])
      await alice.ok(['env', 'set', 'BALENA_SUPERVISOR_POLL_INTERVAL', '60000', '--fleet', 'greenhouse'])
      const deviceVars = await alice.json<Array<{name: string; value: string; device: string | null}>>(['env', 'list', '--device', uuid])
      assert.deepEqual(
        deviceVars.map(({name, value, device}) => [name, value, device]),
        [
          ['COLOUR', 'green', null],
          ['LEVEL', 'debug', uuid],
        ],
      )
      const config = await alice.json<Array<{name: string}>>(['env', 'list', '--fleet', 'greenhouse', '--config'])
      assert.deepEqual(config.map((variable) => variable.name), ['BALENA_SUPERVISOR_POLL_INTERVAL'])
      await alice.fails(['env', 'set', '1BAD', 'x', '--fleet', 'greenhouse'], /invalid variable name/, 2)
      await alice.fails(['env', 'rm', 'COLOUR', '--fleet', 'greenhouse'], /--yes/, 2)
      await alice.ok(['env', 'rm', 'COLOUR', '--fleet', 'greenhouse', '--yes'])
      await alice.fails(['env', 'rm', 'COLOUR', '--fleet', 'greenhouse', '--yes'], /variable "COLOUR" not found/)
      const table = await alice.ok(['env', 'list', '--fleet', 'greenhouse'])
      assert.match(table, /LEVEL\s+info/)
      assert.doesNotMatch(table, /COLOUR/)
    })

    it('sets, lists and removes tags', async () => {
      await alice.ok(['tag', 'set', 'location', 'lab', '--device', uuid])
      await alice.ok(['tag', 'set', 'location', 'roof', '--device', uuid])
      await alice.ok(['tag', 'set', 'owner', 'team-a', '--fleet', 'greenhouse'])
      assert.deepEqual(await alice.json<Array<{tag_key: string; value: string}>>(['tag', 'list', '--device', uuid]).then((tags) => tags.map((tag) => [tag.tag_key, tag.value])), [['location', 'roof']])
      assert.match(await alice.ok(['tag', 'list', '--fleet', 'greenhouse']), /owner\s+team-a/)
      await alice.ok(['tag', 'rm', 'location', '--device', uuid])
      assert.deepEqual(await alice.json<unknown[]>(['tag', 'list', '--device', uuid]), [])
    })

    it('shows the release a device is pinned to by its commit, not its id', async () => {
      const api = new FleetApi(server.url)
      const token = await api.login(server.admin.email, server.admin.password)
      const fleet = await alice.json<{id: number}>(['fleet', 'greenhouse'])
      const commit = 'c0de'.repeat(8)
      await api.createRelease(token, fleet.id, commit)
      await alice.ok(['device', 'pin', uuid, commit.slice(0, 7)])
      assert.match(await alice.ok(['device', uuid]), new RegExp(`pinned to release\\s+${commit}$`, 'm'))
      assert.equal((await alice.json<{is_pinned_on__release: string}>(['device', uuid])).is_pinned_on__release, commit)
      await alice.ok(['device', 'pin', uuid, '--unpin'])
      assert.equal((await alice.json<{is_pinned_on__release: string | null}>(['device', uuid])).is_pinned_on__release, null)
    })

    it('answers every rm --json with one shape: {"removed": [what was removed]}', async () => {
      const spare = await alice.json<{uuid: string}>(['device', 'register', 'greenhouse'])
      await alice.ok(['tag', 'set', 'shelf', 'top', '--device', spare.uuid])
      await alice.ok(['env', 'set', 'SPARE', '1', '--device', spare.uuid])
      assert.deepEqual(await alice.json(['tag', 'rm', 'shelf', '--device', spare.uuid]), {removed: ['shelf']})
      assert.deepEqual(await alice.json(['env', 'rm', 'SPARE', '--device', spare.uuid, '--yes']), {removed: ['SPARE']})
      assert.deepEqual(await alice.json(['device', 'rm', spare.uuid, '--yes']), {removed: [spare.uuid]})
      await alice.ok(['fleet', 'create', 'shortlived', '--type', 'intel-nuc'])
      assert.deepEqual(await alice.json(['fleet', 'rm', 'shortlived', '--yes']), {removed: ['admin/shortlived']})
    })

    it('removes a device with --yes', async () => {
      const spare = await alice.json<{uuid: string}>(['device', 'register', 'greenhouse'])
      await alice.fails(['device', 'rm', spare.uuid], /--yes/, 2)
      await alice.ok(['device', 'rm', spare.uuid, '--yes'])
      await alice.fails(['device', spare.uuid], /not found/)
    })
  })

  describe('keys', () => {
    it('generates, lists and revokes API keys; a revoked key is refused', async () => {
      const key = (await alice.ok(['api-key', 'generate', 'deploy'])).trim()
      const keys = await alice.json<Array<{id: number; name: string}>>(['api-key', 'list'])
      const deploy = keys.find((entry) => entry.name === 'deploy')
      assert.ok(deploy)
      assert.ok(!JSON.stringify(keys).includes(key))
      const withKey = await runCli(['whoami'], {env: {HOME: makeCliHome(), FLOTILLA_URL: server.url, FLOTILLA_TOKEN: key}})
      assert.equal(withKey.exitCode, 0)
      await alice.ok(['api-key', 'revoke', String(deploy.id)])
      const revoked = await runCli(['whoami'], {env: {HOME: makeCliHome(), FLOTILLA_URL: server.url, FLOTILLA_TOKEN: key}})
      assert.equal(revoked.exitCode, 1)
      assert.match(revoked.stderr, /rejected FLOTILLA_TOKEN/)
    })

    it('adds, lists and removes SSH keys, refusing a private key', async () => {
      const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDeH0P2n4GhH3y9P8pGq3Nq7uK0QzKJx3xJmQ2n5c8Zr alice@laptop'
      const file = path.join(alice.home, 'id.pub')
      writeFileSync(file, publicKey + '\n')
      await alice.ok(['ssh-key', 'add', 'laptop', file])
      const keys = await alice.json<Array<{id: number; title: string; public_key: string}>>(['ssh-key', 'list'])
      assert.deepEqual(keys.map((key) => [key.title, key.public_key]), [['laptop', publicKey]])
      await alice.fails(['ssh-key', 'add', 'bad'], /not an OpenSSH public key/, 2)
      const privateFile = path.join(alice.home, 'id')
      writeFileSync(privateFile, '-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n')
      await alice.fails(['ssh-key', 'add', 'oops', privateFile], /private key/, 2)
      assert.deepEqual(await alice.json(['ssh-key', 'rm', String(keys[0].id), '--yes']), {removed: [keys[0].id]})
      assert.deepEqual(await alice.json<unknown[]>(['ssh-key', 'list']), [])
    })

    it('adds an SSH key piped on stdin (cat key.pub | flotilla ssh-key add ci)', async () => {
      const publicKey = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK8vYH1mSxQ0c6w1n2Yp3Qe9x5m7Kq4r2t8u6v0w1y3z ci@runner'
      const added = await alice.run(['ssh-key', 'add', 'ci', '--json'], {input: publicKey + '\n'})
      assert.equal(added.exitCode, 0, added.stderr)
      const keys = await alice.json<Array<{id: number; title: string; public_key: string}>>(['ssh-key', 'list'])
      assert.deepEqual(keys.map((key) => [key.title, key.public_key]), [['ci', publicKey]])
      await alice.ok(['ssh-key', 'rm', String(keys[0].id), '--yes'])
    })
  })

  describe('two organizations', () => {
    it("never shows one organization's fleets, devices, variables, tags or keys to the other", async () => {
      await bob.ok(['fleet', 'create', 'secret', '--type', 'intel-nuc'])
      const bobDevice = await bob.json<{uuid: string}>(['device', 'register', 'secret'])
      await bob.ok(['env', 'set', 'PASSWORD', 'hunter2', '--fleet', 'secret'])
      await bob.ok(['tag', 'set', 'hidden', 'yes', '--device', bobDevice.uuid])

      const aliceFleets = await alice.json<Array<{slug: string}>>(['fleet', 'list'])
      assert.ok(aliceFleets.every((fleet) => fleet.slug.startsWith('admin/')))
      const aliceDevices = await alice.json<Array<{uuid: string}>>(['device', 'list'])
      assert.ok(!aliceDevices.some((device) => device.uuid === bobDevice.uuid))
      await alice.fails(['fleet', 'bob/secret'], /not found/)
      await alice.fails(['device', bobDevice.uuid], /not found/)
      await alice.fails(['env', 'list', '--fleet', 'bob/secret'], /not found/)
      await alice.fails(['env', 'set', 'X', '1', '--device', bobDevice.uuid], /not found/)
      await alice.fails(['tag', 'list', '--device', bobDevice.uuid], /not found/)
      await alice.fails(['device', 'register', 'bob/secret'], /not found/)

      const bobKeys = await bob.json<Array<{id: number}>>(['api-key', 'list'])
      await alice.fails(['api-key', 'revoke', String(bobKeys[0].id)], /not found/)
      assert.equal((await bob.json<unknown[]>(['api-key', 'list'])).length, bobKeys.length)
      const bobOrgs = await bob.json<Array<{handle: string}>>(['organization', 'list'])
      assert.deepEqual(bobOrgs.map((organization) => organization.handle), ['bob'])
    })
  })

  describe('device types and general behaviour', () => {
    it('lists the built-in device types with their architectures', async () => {
      const types = await alice.json<Array<{slug: string; arch: string}>>(['device-type', 'list'])
      const arch = Object.fromEntries(types.map((type) => [type.slug, type.arch]))
      assert.equal(arch['raspberrypi3'], 'armv7hf')
      assert.equal(arch['raspberrypi5'], 'aarch64')
      assert.equal(arch['genericx86-64-ext'], 'amd64')
      assert.equal(arch['beaglebone-black'], 'armv7hf')
    })

    it('suggests the closest command for a typo, with exit code 2', async () => {
      const result = await alice.run(['fleet', 'craete'])
      assert.notEqual(result.exitCode, 0)
      const typo = await alice.run(['whoam'])
      assert.equal(typo.exitCode, 2)
      assert.match(typo.stderr, /did you mean "flotilla whoami"/)
    })

    it('has help with an example for every command', async () => {
      const manifest = JSON.parse(readFileSync(path.join(process.cwd(), 'oclif.manifest.json'), 'utf8')) as {
        commands: Record<string, {summary?: string; examples?: string[]}>
      }
      for (const [id, command] of Object.entries(manifest.commands)) {
        assert.ok(command.summary, `${id} has no summary`)
        assert.ok((command.examples ?? []).length > 0, `${id} has no example`)
      }
    })

    it('logs out', async () => {
      await alice.ok(['logout'])
      await alice.fails(['whoami'], /not logged in/)
    })
  })
})
