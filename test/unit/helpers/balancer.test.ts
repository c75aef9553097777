import {strict as assert} from 'node:assert'
import http from 'node:http'
import net from 'node:net'

import {type Balancer, type HealthCheck, startBalancer} from '../../helpers/balancer.js'
import {eventually} from '../../helpers/fleet-api.js'

/** Longer than a quick check waits, shorter than a check meant for a loaded server. */
const SLOW_PING_MS = 1000

/** A server whose /ping answers only after SLOW_PING_MS, as a starved one does; every other path answers at once. */
class SlowServer {
  readonly http = http.createServer((request, response) => {
    if (request.url !== '/ping') return response.end('stand-in')
    this.pings++
    setTimeout(() => response.end('OK'), SLOW_PING_MS)
  })

  /** Where the balancer's SSH backend checks: a TCP port that accepts. */
  readonly ssh = net.createServer((socket) => socket.destroy())
  /** Checks received: haproxy sends one only once the one before is over (answered or given up). */
  pings = 0

  async listen(): Promise<{port: number; sshPort: number}> {
    const bound = (server: net.Server) => new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)))
    return {port: await bound(this.http), sshPort: await bound(this.ssh)}
  }

  close(): void {
    this.http.closeAllConnections()
    this.http.close()
    this.ssh.close()
  }
}

function statusOf(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, {agent: false}, (response) => resolve(response.resume().statusCode ?? 0)).on('error', reject)
  })
}

describe('test/helpers/balancer.ts', function () {
  this.timeout(30_000)
  let server: SlowServer
  let balancer: Balancer | undefined

  beforeEach(() => {
    server = new SlowServer()
  })

  afterEach(async () => {
    await balancer?.stop()
    balancer = undefined
    server.close()
  })

  it('takes a server out by default as soon as its /ping is slow, so the tests fail over quickly', async () => {
    balancer = await startBalancer([await server.listen()])
    await eventually(async () => (await statusOf(balancer!.url)) === 503, 'the balancer to take the slow server out')
  })

  it('keeps a server whose /ping is slow in when the health check given allows for it, as a bench under load needs', async () => {
    const patient: HealthCheck = {intervalMs: 300, timeoutMs: SLOW_PING_MS * 3, fall: 2, rise: 1}
    balancer = await startBalancer([await server.listen()], undefined, {healthCheck: patient})
    // Past `fall` slow checks over: had they counted as failed, the server would be out by now.
    await eventually(async () => server.pings > patient.fall + 1, 'the balancer to check the server a few times')
    assert.equal(await statusOf(balancer.url), 200, 'the balancer took the slow server out')
  })
})
