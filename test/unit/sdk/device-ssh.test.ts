import {strict as assert} from 'node:assert'
import {access, mkdtemp, readFile, rm} from 'node:fs/promises'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {ExpectedError, NotFoundError, UsageError} from '../../../src/errors.js'
import {FleetClient} from '../../../src/sdk/client.js'
import {
  classifyDeviceArgument,
  directSshArgs,
  gatewaySshArgs,
  getGatewayTarget,
  getOnlineDevice,
  knownHostsLine,
  runSsh,
  sshBinary,
  wantsTty,
  writeGatewayKnownHosts,
} from '../../../src/sdk/device-ssh.js'

const UUID = '7cf02a6e1b3d4c5f8a9b0c1d2e3f4a5b'
const HOST_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0vGxq9kQ0x8cS0vZqf3pD3O3l2mPqk4nQm1YbG7hXs'

function deviceRow(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 4,
    uuid: UUID,
    device_name: 'kitchen-pi',
    note: null,
    is_online: true,
    status: 'Idle',
    api_heartbeat_state: 'online',
    os_version: null,
    supervisor_version: null,
    ip_address: null,
    last_connectivity_event: '2026-01-02T03:04:05.000Z',
    created_at: '2026-01-01T00:00:00.000Z',
    is_pinned_on__release: [],
    belongs_to__application: [{id: 1, slug: 'admin/kitchen', app_name: 'kitchen'}],
    is_of__device_type: [{slug: 'raspberrypi4-64'}],
    is_running__release: [],
    ...overrides,
  }
}

/** A loopback API answering whoami, the well-known document and device queries as the test says. */
async function withApi(routes: Record<string, unknown>, run: (url: string) => Promise<void>): Promise<void> {
  const server: Server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const pathname = new URL(request.url ?? '/', 'http://x').pathname
    const body = routes[pathname]
    response.writeHead(body === undefined ? 404 : 200, {'content-type': 'application/json'})
    response.end(JSON.stringify(body ?? 'not found'))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
}

async function waitForFile(file: string, deadlineMs = 5000): Promise<void> {
  const started = Date.now()
  for (;;) {
    try {
      await access(file)
      return
    } catch {
      if (Date.now() - started > deadlineMs) throw new Error(`timed out waiting for ${file}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  }
}

describe('device-ssh', () => {
  describe('classifyDeviceArgument', () => {
    it('takes 7+ hex characters for a device UUID (or prefix), lowercased', () => {
      assert.deepEqual(classifyDeviceArgument('7cf02a6'), {kind: 'device', reference: '7cf02a6'})
      assert.deepEqual(classifyDeviceArgument(UUID.toUpperCase()), {kind: 'device', reference: UUID})
    })

    it('takes IP addresses, localhost and dotted host names for a device on the local network', () => {
      assert.deepEqual(classifyDeviceArgument('192.168.1.23'), {kind: 'address', host: '192.168.1.23'})
      assert.deepEqual(classifyDeviceArgument('::1'), {kind: 'address', host: '::1'})
      assert.deepEqual(classifyDeviceArgument('[fe80::1]'), {kind: 'address', host: 'fe80::1'})
      assert.deepEqual(classifyDeviceArgument('mypi.local'), {kind: 'address', host: 'mypi.local'})
      assert.deepEqual(classifyDeviceArgument('localhost'), {kind: 'address', host: 'localhost'})
    })

    it('takes anything else for a fleet name or slug, short hex words included', () => {
      assert.deepEqual(classifyDeviceArgument('myorg/myfleet'), {kind: 'fleet', reference: 'myorg/myfleet'})
      assert.deepEqual(classifyDeviceArgument('kitchen'), {kind: 'fleet', reference: 'kitchen'})
      assert.deepEqual(classifyDeviceArgument('cafe'), {kind: 'fleet', reference: 'cafe'})
      assert.deepEqual(classifyDeviceArgument('my.org/fleet'), {kind: 'fleet', reference: 'my.org/fleet'})
    })

    it('refuses an empty argument', () => {
      assert.throws(() => classifyDeviceArgument('  '), UsageError)
    })
  })

  describe('gatewaySshArgs', () => {
    const gateway = {username: 'alice', host: '127.0.0.1', port: 2222}

    it('asks the gateway for the host OS of a device, with a terminal when asked', () => {
      assert.deepEqual(gatewaySshArgs(gateway, UUID, {tty: true}), ['-t', '-p', '2222', 'alice@127.0.0.1', `host ${UUID}`])
      assert.deepEqual(gatewaySshArgs(gateway, UUID, {}), ['-p', '2222', 'alice@127.0.0.1', `host ${UUID}`])
    })

    it('names the service and the command in the gateway command', () => {
      assert.deepEqual(gatewaySshArgs(gateway, UUID, {service: 'main', command: 'uname -a'}), ['-p', '2222', 'alice@127.0.0.1', `enter ${UUID} main -- uname -a`])
      assert.deepEqual(gatewaySshArgs(gateway, UUID, {command: 'ls /'}), ['-p', '2222', 'alice@127.0.0.1', `host ${UUID} ls /`])
    })

    it('passes identity, verbose and a port override, and leaves out -p for port 22', () => {
      assert.deepEqual(gatewaySshArgs({...gateway, port: 22, host: 'ssh.balena-devices.com'}, UUID, {}), ['alice@ssh.balena-devices.com', `host ${UUID}`])
      assert.deepEqual(gatewaySshArgs(gateway, UUID, {port: 2022, identity: '/home/a/.ssh/id_ed25519', verbose: true, tty: true}), [
        '-t', '-p', '2022', '-i', '/home/a/.ssh/id_ed25519', '-v', 'alice@127.0.0.1', `host ${UUID}`,
      ])
    })

    it('pins the host key through a known_hosts file of its own', () => {
      assert.deepEqual(gatewaySshArgs(gateway, UUID, {knownHostsFile: '/tmp/kh'}), [
        '-p', '2222', '-o', 'UserKnownHostsFile=/tmp/kh', '-o', 'StrictHostKeyChecking=yes', 'alice@127.0.0.1', `host ${UUID}`,
      ])
    })
  })

  describe('wantsTty', () => {
    it('asks for a terminal when forced, or when stdin and stdout both are terminals', () => {
      assert.equal(wantsTty(false, {stdin: {isTTY: true}, stdout: {isTTY: true}}), true)
      assert.equal(wantsTty(false, {stdin: {isTTY: false}, stdout: {isTTY: true}}), false)
      assert.equal(wantsTty(false, {stdin: {}, stdout: {isTTY: true}}), false)
      assert.equal(wantsTty(false, {stdin: {isTTY: true}, stdout: {}}), false)
      assert.equal(wantsTty(true, {stdin: {}, stdout: {}}), true)
    })
  })

  describe('directSshArgs', () => {
    it('connects as root to port 22222 and names the service in FLOTILLA_SERVICE', () => {
      const learnKey = ['-o', 'StrictHostKeyChecking=accept-new']
      assert.deepEqual(directSshArgs('192.168.1.23', {tty: true}), ['-t', '-p', '22222', ...learnKey, 'root@192.168.1.23'])
      assert.deepEqual(directSshArgs('mypi.local', {service: 'main', command: 'uname -a'}), ['-p', '22222', ...learnKey, '-o', 'SetEnv=FLOTILLA_SERVICE=main', 'root@mypi.local', 'uname -a'])
      assert.deepEqual(directSshArgs('::1', {port: 4321, identity: 'key', verbose: true}), ['-p', '4321', '-i', 'key', '-v', ...learnKey, 'root@::1'])
    })
  })

  describe('known hosts', () => {
    it('writes "host key" for port 22 and "[host]:port key" for any other', () => {
      assert.equal(knownHostsLine('ssh.example.com', 22, HOST_KEY), `ssh.example.com ${HOST_KEY}`)
      assert.equal(knownHostsLine('127.0.0.1', 2222, `${HOST_KEY}\n`), `[127.0.0.1]:2222 ${HOST_KEY}`)
    })

    it('writes one file per gateway under the given directory', async () => {
      const directory = await mkdtemp(path.join(tmpdir(), 'flotilla-ssh-'))
      try {
        const file = await writeGatewayKnownHosts(directory, '127.0.0.1', 2222, HOST_KEY)
        assert.ok(file.startsWith(path.join(directory, 'ssh') + path.sep), file)
        assert.equal(await readFile(file, 'utf8'), `[127.0.0.1]:2222 ${HOST_KEY}\n`)
      } finally {
        await rm(directory, {recursive: true, force: true})
      }
    })
  })

  describe('through the API', () => {
    it('takes the username from whoami and the gateway from the well-known document', async () => {
      await withApi(
        {
          '/actor/v1/whoami': {id: 1, actorType: 'user', actorTypeId: 1, username: 'alice'},
          '/.well-known/flotilla.json': {api: 'x', builder: 'x', ssh: {host: '127.0.0.1', port: 2222, hostKey: HOST_KEY}, tunnel: 'x', registry: null},
        },
        async (url) => {
          const target = await getGatewayTarget(new FleetClient({remote: url, token: 't'}))
          assert.deepEqual(target, {username: 'alice', host: '127.0.0.1', port: 2222, hostKey: HOST_KEY})
        },
      )
    })

    it('refuses credentials without a username', async () => {
      await withApi(
        {
          '/actor/v1/whoami': {id: 1, actorType: 'application', actorTypeId: 1, slug: 'admin/kitchen'},
          '/.well-known/flotilla.json': {api: 'x', builder: 'x', ssh: {host: '127.0.0.1', port: 2222}, tunnel: 'x', registry: null},
        },
        async (url) => {
          await assert.rejects(getGatewayTarget(new FleetClient({remote: url, token: 't'})), (error: Error) => error instanceof ExpectedError && /belong to an application — run "flotilla login"/.test(error.message))
        },
      )
    })

    it('says a device is offline, or not found', async () => {
      await withApi({'/v7/device': {d: [deviceRow({is_online: false})]}}, async (url) => {
        await assert.rejects(getOnlineDevice(new FleetClient({remote: url, token: 't'}), '7cf02a6'), (error: Error) => {
          assert.ok(error instanceof ExpectedError)
          assert.match(error.message, /^device 7cf02a6 \(kitchen-pi\) is offline .*agent must be running/)
          return true
        })
      })
      await withApi({'/v7/device': {d: []}}, async (url) => {
        await assert.rejects(getOnlineDevice(new FleetClient({remote: url, token: 't'}), '7cf02a6'), (error: Error) => error instanceof NotFoundError && /device "7cf02a6" not found — run "flotilla device list"/.test(error.message))
      })
      await withApi({'/v7/device': {d: [deviceRow()]}}, async (url) => {
        assert.equal((await getOnlineDevice(new FleetClient({remote: url, token: 't'}), '7cf02a6')).uuid, UUID)
      })
    })
  })

  describe('runSsh', () => {
    it('resolves with the exit status of the child, or 128 + the signal that ended it', async () => {
      assert.equal(await runSsh('/bin/sh', ['-c', 'exit 0']), 0)
      assert.equal(await runSsh('/bin/sh', ['-c', 'exit 255']), 255)
      assert.equal(await runSsh('/bin/sh', ['-c', 'kill -TERM $$']), 143)
    })

    it('hands a signal meant for this process to the child instead of dying first', async () => {
      const directory = await mkdtemp(path.join(tmpdir(), 'flotilla-ssh-'))
      const ready = path.join(directory, 'ready')
      try {
        const running = runSsh('/bin/sh', ['-c', `trap 'exit 42' HUP; touch '${ready}'; while :; do sleep 0.05; done`])
        await waitForFile(ready)
        process.kill(process.pid, 'SIGHUP')
        assert.equal(await running, 42)
        assert.equal(process.listenerCount('SIGHUP'), 0)
      } finally {
        await rm(directory, {recursive: true, force: true})
      }
    })

    it('says how to fix a missing OpenSSH client', async () => {
      await assert.rejects(runSsh('/nonexistent/ssh', []), (error: Error) => error instanceof ExpectedError && /not found — install it.*FLOTILLA_SSH_BINARY/.test(error.message))
    })

    it('runs FLOTILLA_SSH_BINARY when set', () => {
      assert.equal(sshBinary({FLOTILLA_SSH_BINARY: '/opt/ssh'}), '/opt/ssh')
      assert.equal(sshBinary({}), 'ssh')
    })
  })
})
