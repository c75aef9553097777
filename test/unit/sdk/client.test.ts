import {strict as assert} from 'node:assert'
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {gzipSync} from 'node:zlib'

import {ApiError, ConnectionError, ExpectedError, NotLoggedInError, UsageError} from '../../../src/errors.js'
import {FleetClient, unreachableHint} from '../../../src/sdk/client.js'
import {balenaDomainOf, endpointOverridesFrom} from '../../../src/sdk/endpoints.js'
import {odataValue} from '../../../src/sdk/pine.js'
import {getRelease} from '../../../src/sdk/releases.js'
import {parseDeviceReference, parseFleetReference} from '../../../src/sdk/references.js'

type Handler = (request: IncomingMessage, body: string, response: ServerResponse) => void

/** A loopback HTTP server answering as the test says, recording what the client sent. */
async function withServer(handler: Handler, run: (url: string, seen: Array<{method: string; url: string; headers: IncomingMessage['headers']; body: string}>) => Promise<void>): Promise<void> {
  const seen: Array<{method: string; url: string; headers: IncomingMessage['headers']; body: string}> = []
  const server: Server = createServer((request, response) => {
    let body = ''
    request.setEncoding('utf8').on('data', (chunk: string) => (body += chunk))
    request.on('end', () => {
      seen.push({method: request.method ?? '', url: request.url ?? '', headers: request.headers, body})
      handler(request, body, response)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen)
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
}

function answer(status: number, body: unknown, type = 'application/json'): Handler {
  return (_request, _body, response) => {
    response.writeHead(status, {'content-type': type})
    response.end(typeof body === 'string' && type !== 'application/json' ? body : JSON.stringify(body))
  }
}

describe('FleetClient', () => {
  it('sends the bearer token and the client name, and parses JSON', async () => {
    await withServer(answer(200, {d: [{id: 1}]}), async (url, seen) => {
      const client = new FleetClient({remote: url, token: 'secret-token', clientName: 'flotilla/test'})
      assert.deepEqual(await client.pine.get('application', {$select: ['id', 'slug'], $filter: `slug eq ${odataValue('a/b')}`}), [{id: 1}])
      assert.equal(seen[0].headers.authorization, 'Bearer secret-token')
      assert.equal(seen[0].headers['x-balena-client'], 'flotilla/test')
      assert.equal(seen[0].url, '/v7/application?$select=id,slug&$filter=slug%20eq%20%27a%2Fb%27')
    })
  })

  it('refuses to send an authenticated request without a token', async () => {
    const client = new FleetClient({remote: 'http://127.0.0.1:9'})
    await assert.rejects(client.pine.get('application'), NotLoggedInError)
  })

  it('maps 401 to a message about credentials, and the server JSON string bodies to their text', async () => {
    await withServer(answer(401, ''), async (url) => {
      await assert.rejects(new FleetClient({remote: url, token: 'revoked'}).pine.get('device'), /rejected your credentials.*flotilla login/)
    })
    await withServer(answer(400, 'Unique key constraint violated'), async (url) => {
      await assert.rejects(new FleetClient({remote: url, token: 't'}).pine.post('device', {}), (error: ApiError) => error.statusCode === 400 && error.message === 'Unique key constraint violated')
    })
    await withServer(answer(500, 'Server error'), async (url) => {
      await assert.rejects(new FleetClient({remote: url, token: 't', retries: 0}).pine.get('device'), /the fleet server failed \(500: Server error\)/)
    })
  })

  it('retries an idempotent request after a 503, but never a POST', async () => {
    let calls = 0
    const flaky: Handler = (_request, _body, response) => {
      calls++
      if (calls === 1) answer(503, 'busy')(_request, _body, response)
      else answer(200, {d: []})(_request, _body, response)
    }

    await withServer(flaky, async (url) => {
      assert.deepEqual(await new FleetClient({remote: url, token: 't'}).pine.get('device'), [])
      assert.equal(calls, 2)
    })
    calls = 0
    await withServer(flaky, async (url) => {
      await assert.rejects(new FleetClient({remote: url, token: 't'}).pine.post('device', {}), /503/)
      assert.equal(calls, 1)
    })
  })

  it('upserts: a 409 on create becomes a PATCH filtered by the natural key', async () => {
    const handler: Handler = (request, _body, response) => (request.method === 'POST' ? answer(409, 'Unique key constraint violated') : answer(200, ''))(request, _body, response)
    await withServer(handler, async (url, seen) => {
      await new FleetClient({remote: url, token: 't'}).pine.upsert('device_tag', {device: 4, tag_key: "o'clock"}, {value: 'x'})
      assert.deepEqual(seen.map((request) => request.method), ['POST', 'PATCH'])
      assert.equal(seen[1].url, '/v7/device_tag?$filter=device%20eq%204%20and%20tag_key%20eq%20%27o%27%27clock%27')
      assert.deepEqual(JSON.parse(seen[1].body), {value: 'x'})
    })
  })

  it('says the server cannot be reached, at once, when nothing listens', async () => {
    const started = Date.now()
    await assert.rejects(new FleetClient({remote: 'http://127.0.0.1:9', token: 't'}).pine.get('device'), ConnectionError)
    assert.ok(Date.now() - started < 2000, 'a refused connection is not retried')
  })

  it('learns a flotilla server’s endpoints from its well-known document, and derives balena ones', async () => {
    const document = {api: 'x', builder: 'http://b', ssh: {host: '127.0.0.1', port: 2222}, tunnel: 'http://t', registry: null}
    await withServer(answer(200, document), async (url) => {
      assert.equal((await new FleetClient({remote: url}).endpoints()).builder, 'http://b')
    })
    const balena = await new FleetClient({remote: 'balena-cloud.com'}).endpoints()
    assert.equal(balena.api, 'https://api.balena-cloud.com')
    assert.deepEqual(balena.ssh, {host: 'ssh.balena-devices.com', port: 22})
  })

  it('says what to check when a remote does not answer: start a local server, or the domain, network and DNS of a remote one', () => {
    assert.match(unreachableHint('http://127.0.0.1:7171', 'ECONNREFUSED'), /flotilla server start/)
    assert.match(unreachableHint('http://localhost:7171', 'ECONNREFUSED'), /flotilla server start/)
    const domain = unreachableHint('balena.example.org', 'ENOTFOUND')
    assert.doesNotMatch(domain, /server start/)
    assert.match(domain, /its name does not resolve: check the spelling of "balena\.example\.org", your network and DNS/)
    assert.match(unreachableHint('https://fleet.example.org', 'ETIMEDOUT'), /did not answer \(ETIMEDOUT\): check the spelling of "https:\/\/fleet\.example\.org"/)
  })

  it('finds the builder, tunnel and SSH gateway of a balena server: by the settings, by balena names for api.<domain>, else names the setting', async () => {
    await withServer(answer(404, 'Not Found'), async (url, seen) => {
      const overrides = endpointOverridesFrom({FLOTILLA_BUILDER_URL: 'https://builder.example.org/', FLOTILLA_TUNNEL_URL: 'https://tunnel.example.org:443', FLOTILLA_SSH_HOST: 'ssh.example.org'})
      const configured = new FleetClient({remote: url, endpointOverrides: overrides})
      assert.equal(await configured.endpoint('builder'), 'https://builder.example.org')
      assert.equal(await configured.endpoint('tunnel'), 'https://tunnel.example.org:443')
      assert.deepEqual(await configured.endpoint('ssh'), {host: 'ssh.example.org', port: 22})
      assert.equal(seen.length, 0, 'settings need no question to the server')
      for (const [kind, setting] of [['builder', 'FLOTILLA_BUILDER_URL'], ['tunnel', 'FLOTILLA_TUNNEL_URL'], ['ssh', 'FLOTILLA_SSH_HOST']] as const) {
        await assert.rejects(new FleetClient({remote: url}).endpoint(kind), (error: Error) => {
          assert.ok(error instanceof ExpectedError)
          assert.match(error.message, new RegExp(`is not a flotilla server: it has no /.well-known/flotilla.json\\) — set ${setting}`))
          assert.doesNotMatch(error.message, /404/)
          return true
        })
      }
    })
    const balena = new FleetClient({remote: 'balena-cloud.com'})
    assert.equal(await balena.endpoint('tunnel'), 'https://tunnel.balena-cloud.com:443')
    assert.deepEqual(await balena.endpoint('ssh'), {host: 'ssh.balena-devices.com', port: 22})
    assert.equal(balenaDomainOf('https://api.balena-cloud.com'), 'balena-cloud.com', 'https://api.<domain> is named as balena names it')
    assert.equal(balenaDomainOf('http://127.0.0.1:7171'), undefined)
    assert.deepEqual(endpointOverridesFrom({FLOTILLA_SSH_HOST: '[::1]:2222'}).ssh, {host: '::1', port: 2222})
    assert.throws(() => endpointOverridesFrom({FLOTILLA_BUILDER_URL: 'builder.example.org'}), /FLOTILLA_BUILDER_URL must be an http:\/\/ or https:\/\/ URL/)
    assert.throws(() => endpointOverridesFrom({FLOTILLA_SSH_HOST: 'ssh.example.org:99999'}), /FLOTILLA_SSH_HOST must be a host name/)
  })

  it('reads compressed answers, passes a 304 through, and replaces the query with searchParams', async () => {
    const handler: Handler = (request, _body, response) => {
      if (request.headers['if-none-match'] === '"v1"') {
        response.writeHead(304, {etag: '"v1"'})
        response.end()
        return
      }

      response.writeHead(200, {'content-type': 'application/json', 'content-encoding': 'gzip'})
      response.end(gzipSync(JSON.stringify({url: request.url})))
    }

    await withServer(handler, async (url) => {
      const client = new FleetClient({remote: url, token: 't'})
      assert.deepEqual(await client.request('GET', '/v7/device?a=1', {searchParams: {count: 'all', wait: 5}}), {url: '/v7/device?count=all&wait=5'})
      const unchanged = await client.requestWithResponse('GET', '/state', {headers: {'if-none-match': '"v1"'}})
      assert.deepEqual([unchanged.statusCode, unchanged.headers.etag, unchanged.body], [304, '"v1"', undefined])
    })
  })

  it('follows a redirect, without the credentials when it leads to another origin', async () => {
    await withServer(answer(200, {ok: true}), async (elsewhere, seenElsewhere) => {
      const handler: Handler = (request, _body, response) => {
        response.writeHead(request.url === '/v7/here' ? 302 : 307, {location: request.url === '/v7/here' ? '/v7/there' : `${elsewhere}/away`})
        response.end()
      }

      await withServer(handler, async (url, seen) => {
        assert.deepEqual(await new FleetClient({remote: url, token: 't'}).request('GET', '/v7/here'), {ok: true})
        assert.deepEqual(seen.map((request) => [request.url, request.headers.authorization]), [['/v7/here', 'Bearer t'], ['/v7/there', 'Bearer t']])
        assert.deepEqual(seenElsewhere.map((request) => [request.url, request.headers.authorization]), [['/away', undefined]])
      })
    })
  })

  it('gives up on a server that does not answer within the timeout, and stops when aborted', async () => {
    await withServer(() => {}, async (url) => {
      const client = new FleetClient({remote: url, token: 't', timeoutMs: 200, retries: 0})
      await assert.rejects(client.request('GET', '/v7/device'), ConnectionError)
      const aborted = client.request('GET', '/v7/device', {signal: AbortSignal.timeout(50)})
      await assert.rejects(aborted, (error: Error) => error instanceof ExpectedError && /aborted/.test(error.message))
    })
  })

  it('finds a release by a commit prefix made only of digits as well as by id', async () => {
    const row = {id: 3, commit: '1234567'.padEnd(32, 'a'), status: 'success', belongs_to__application: [{slug: 'a/b'}], release_tag: []}
    await withServer(answer(200, {d: [row]}), async (url, seen) => {
      const client = new FleetClient({remote: url, token: 't'})
      assert.equal((await getRelease(client, '1234567')).id, 3)
      assert.match(seen[0].url, /\$filter=id%20eq%201234567%20or%20startswith\(commit,%271234567%27\)/)
      await getRelease(client, '42')
      assert.match(seen[1].url, /\$filter=id%20eq%2042&/)
    })
  })
})

describe('references and OData values', () => {
  it('quotes OData strings by doubling quotes', () => {
    assert.equal(odataValue("it's"), "'it''s'")
    assert.equal(odataValue(5), '5')
    assert.equal(odataValue(null), 'null')
  })

  it('takes full UUIDs and prefixes of 7 or more hex characters', () => {
    assert.deepEqual(parseDeviceReference('ABCDEF0123456789abcdef0123456789'), {uuid: 'abcdef0123456789abcdef0123456789', exact: true})
    assert.deepEqual(parseDeviceReference('abcdef0'), {uuid: 'abcdef0', exact: false})
    assert.throws(() => parseDeviceReference('abc'), UsageError)
    assert.throws(() => parseDeviceReference('not-hex-at-all'), UsageError)
  })

  it('tells fleet slugs from names', () => {
    assert.deepEqual(parseFleetReference('Acme/Sensors'), {slug: 'acme/sensors'})
    assert.deepEqual(parseFleetReference('sensors'), {name: 'sensors'})
    assert.throws(() => parseFleetReference('  '), UsageError)
  })
})
