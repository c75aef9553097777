import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {PassThrough, type Writable} from 'node:stream'

import type Docker from 'dockerode'

import {createServer} from 'node:http'
import type {AddressInfo} from 'node:net'

import {LogShipper, logStreamSender} from '../../../src/agent/log-shipper.js'
import {FleetClient} from '../../../src/sdk/client.js'
import {LOG_BATCH_HEADER, type LocalLogLine, type LogLine} from '../../../src/protocol/log-line.js'

describe('LogShipper', () => {
  let shipper: LogShipper | undefined
  let dataDir: string
  let journalPath: string
  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-log-shipper-'))
    journalPath = path.join(dataDir, 'logs.journal')
  })
  afterEach(async () => {
    await shipper?.stop()
    shipper = undefined
    rmSync(dataDir, {recursive: true, force: true})
  })

  it('sends buffered lines in one batch', async () => {
    const batches: LogLine[][] = []
    shipper = new LogShipper({journalPath, send: async (lines) => void batches.push(lines), batchIntervalMs: 60_000, now: () => 1000})
    shipper.systemLine('Starting service main', 7)
    shipper.systemLine('Started service main', 7)
    await shipper.flush()
    assert.deepEqual(batches, [[
      {message: 'Starting service main', timestamp: 1000, isSystem: true, isStdErr: false, serviceId: 7},
      {message: 'Started service main', timestamp: 1000, isSystem: true, isStdErr: false, serviceId: 7},
    ]])
  })

  it('sends a batch whose answer was lost again with the same number and lines, so the server can store it once', async () => {
    // A server that stores the first request and is cut off before answering, as a kill or a network fault does.
    const received: Array<{batch: string | undefined; body: string}> = []
    const server = createServer((request, response) => {
      let body = ''
      request.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8')
      })
      request.on('end', () => {
        received.push({batch: request.headers[LOG_BATCH_HEADER] as string | undefined, body})
        if (received.length === 1) response.socket?.destroy()
        else response.writeHead(201).end()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    try {
      const client = new FleetClient({remote: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 'k', retries: 0})
      shipper = new LogShipper({journalPath, send: logStreamSender(client, 'd'.repeat(32)), batchIntervalMs: 60_000, maxRetryDelayMs: 0})
      shipper.systemLine('first')
      await shipper.flush()
      shipper.systemLine('second')
      await shipper.flush()
      await shipper.flush()
      assert.equal(received.length, 3)
      assert.match(received[0].batch ?? '', /^[\da-f]{16}\/1$/)
      assert.deepEqual(received[1], received[0], 'the same batch, number and lines, again')
      assert.equal(received[2].batch, received[0].batch!.replace(/1$/, '2'))
      assert.match(received[2].body, /"second"/)
      assert.doesNotMatch(received[2].body, /"first"/)
    } finally {
      await shipper?.stop()
      shipper = undefined
      server.close()
    }
  })

  it('keeps the newest lines while the server is unreachable, then says how many it dropped', async () => {
    let clock = 0
    let reachable = false
    const batches: LogLine[][] = []
    shipper = new LogShipper({
      journalPath,
      send: async (lines) => {
        if (!reachable) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {code: 'ECONNREFUSED'})
        batches.push(lines)
      },
      batchIntervalMs: 60_000,
      // Room for three of these lines' records.
      maxUnsentBytes: 3 * 100,
      now: () => clock,
    })
    for (let index = 1; index <= 5; index++) shipper.systemLine(`line ${index}`)
    await shipper.flush()
    shipper.systemLine('line 6')
    reachable = true
    clock += 60_000
    await shipper.flush()
    assert.equal(batches.length, 1)
    assert.deepEqual(batches[0].map((line) => line.message), ['Suppressed 3 log lines while the server was unreachable', 'line 4', 'line 5', 'line 6'])
    assert.equal(batches[0][0].isSystem, true)
  })

  it('keeps lines the server refused (507) across a restart of the agent, and sends them once it takes them', async () => {
    const refused: LogLine[][] = []
    shipper = new LogShipper({journalPath, send: async (lines) => {
      refused.push(lines)
      throw new Error('507 disk full')
    }, batchIntervalMs: 60_000, now: () => 1000})
    shipper.systemLine('before the restart')
    await shipper.stop()
    assert.equal(refused.length, 1, 'tried once, when stopping')

    const batches: LogLine[][] = []
    shipper = new LogShipper({journalPath, send: async (lines) => void batches.push(lines), batchIntervalMs: 60_000, now: () => 2000})
    shipper.systemLine('after the restart')
    await shipper.flush()
    await shipper.flush()
    assert.deepEqual(batches.flat().map((line) => line.message), ['before the restart', 'after the restart'])
  })

  it('waits before trying again after a failure', async () => {
    let attempts = 0
    let clock = 0
    shipper = new LogShipper({journalPath, send: async () => {
      attempts++
      throw new Error('down')
    }, batchIntervalMs: 60_000, now: () => clock})
    shipper.systemLine('x')
    await shipper.flush()
    await shipper.flush()
    assert.equal(attempts, 1)
    clock += 60_000
    await shipper.flush()
    assert.equal(attempts, 2)
  })

  it('hands every line to local subscribers and cuts long messages', async () => {
    shipper = new LogShipper({journalPath, send: async () => {}, batchIntervalMs: 60_000, now: () => 5})
    const seen: LocalLogLine[] = []
    const unsubscribe = shipper.subscribe((line) => seen.push(line))
    shipper.systemLine('a'.repeat(20_000))
    unsubscribe()
    shipper.systemLine('unseen')
    assert.equal(seen.length, 1)
    assert.equal(seen[0].message.length, 10_000)
  })

  /**
   * An engine holding one container's log as Docker keeps it (RFC 3339 nanosecond timestamps, a stream each line);
   * `logs` answers the lines at or after `since` as Docker does, stdout and stderr delivered apart (stdout first).
   */
  function engineWithLog(entries: Array<{at: string; stream: 'stdout' | 'stderr'; text: string}>, runningFollows: number) {
    let follows = 0
    const sinces: string[] = []
    const docker = {
      modem: {
        demuxStream(raw: PassThrough, stdout: Writable, stderr: Writable) {
          raw.on('data', (entry: {stream: 'stdout' | 'stderr'; line: string}) => (entry.stream === 'stdout' ? stdout : stderr).write(entry.line))
        },
      },
      getContainer: () => ({
        inspect: async () => ({Config: {Tty: false}, State: {Running: follows < runningFollows}}),
        async logs(options: {since: string}) {
          follows++
          sinces.push(options.since)
          const [seconds, fraction] = options.since.split('.')
          const since = BigInt(seconds) * 1_000_000_000n + BigInt(fraction)
          const raw = new PassThrough({objectMode: true})
          const nanos = (at: string) => BigInt(Date.parse(`${at.slice(0, 19)}Z`)) * 1_000_000n + BigInt(at.slice(20, 29))
          const selected = entries.filter((entry) => nanos(entry.at) >= since)
          for (const stream of ['stdout', 'stderr'] as const) for (const entry of selected.filter((candidate) => candidate.stream === stream)) raw.write({stream, line: `${entry.at} ${entry.text}\n`})
          setImmediate(() => raw.end())
          return raw
        },
      }),
    }
    return {docker: docker as unknown as Docker, sinces}
  }

  it('reads stdout and stderr with a cursor each: following again loses and repeats no line, even at the same nanosecond', async () => {
    const entries = [
      {at: '2030-01-01T00:00:01.000000001Z', stream: 'stderr' as const, text: 'err 1'},
      {at: '2030-01-01T00:00:02.000000000Z', stream: 'stdout' as const, text: 'out 1'},
      {at: '2030-01-01T00:00:02.000000000Z', stream: 'stdout' as const, text: 'out 2, same time'},
      {at: '2030-01-01T00:00:02.500000000Z', stream: 'stderr' as const, text: 'err 2'},
      {at: '2030-01-01T00:00:03.000000000Z', stream: 'stdout' as const, text: 'out 3'},
    ]
    const batches: LogLine[][] = []
    // A journal begun at midnight: a container not read yet is read from then.
    shipper = new LogShipper({journalPath, send: async (lines) => void batches.push(lines), batchIntervalMs: 60_000, now: () => Date.parse('2030-01-01T00:00:00Z')})
    const engine = engineWithLog(entries, 3)
    await shipper.followContainer(engine.docker, {id: 'c1', serviceId: 7, serviceName: 'main'})
    await shipper.flush()
    const shipped = batches.flat()
    assert.equal(engine.sinces.length, 3, 'followed three times: the container kept running twice')
    assert.deepEqual(shipped.map((line) => [line.isStdErr ? 'stderr' : 'stdout', line.message]).sort(), entries.map((entry) => [entry.stream, entry.text]).sort())
    assert.equal(engine.sinces[1], '1893456002.500000000', 'the next reading starts where the stream read least far stopped')
  })

  it('reads a stopped container (one that stopped while the agent was away) to its end, once while it stays stopped', async () => {
    const entries = [{at: '2030-01-01T00:00:01.000000000Z', stream: 'stdout' as const, text: 'written while the agent was away'}]
    const batches: LogLine[][] = []
    shipper = new LogShipper({journalPath, send: async (lines) => void batches.push(lines), batchIntervalMs: 60_000, now: () => Date.parse('2030-01-01T00:00:00Z')})
    const engine = engineWithLog(entries, 0)
    await shipper.followContainer(engine.docker, {id: 'c1', serviceId: 7, serviceName: 'main'})
    await shipper.followContainer(engine.docker, {id: 'c1', serviceId: 7, serviceName: 'main'})
    await shipper.flush()
    assert.deepEqual(batches.flat().map((line) => line.message), ['written while the agent was away'])
    assert.equal(engine.sinces.length, 1, 'its log is not read again while it stays stopped')
  })

  it('follows a container again after a restart from the cursors it journaled: the lines it read and could not send are sent, none twice', async () => {
    const entries = [
      {at: '2030-01-01T00:00:01.000000000Z', stream: 'stdout' as const, text: 'out 1'},
      {at: '2030-01-01T00:00:01.000000000Z', stream: 'stdout' as const, text: 'out 2, same time'},
      {at: '2030-01-01T00:00:02.000000000Z', stream: 'stderr' as const, text: 'err 1'},
    ]
    const midnight = () => Date.parse('2030-01-01T00:00:00Z')
    shipper = new LogShipper({journalPath, send: async () => {
      throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {code: 'ECONNREFUSED'})
    }, batchIntervalMs: 60_000, now: midnight})
    await shipper.followContainer(engineWithLog(entries.slice(0, 2), 1).docker, {id: 'c1', serviceId: 7, serviceName: 'main'})
    await shipper.stop()

    // Started again later: what it read before comes from the journal, the rest from where each stream stopped.
    const batches: LogLine[][] = []
    shipper = new LogShipper({journalPath, send: async (lines) => void batches.push(lines), batchIntervalMs: 60_000, now: () => Date.parse('2030-01-01T00:00:01.500Z')})
    const engine = engineWithLog(entries, 1)
    await shipper.followContainer(engine.docker, {id: 'c1', serviceId: 7, serviceName: 'main'})
    await shipper.flush()
    assert.equal(engine.sinces[0], '1893456000.000000000', 'stderr, never read, from when the journal began')
    assert.deepEqual(batches.flat().map((line) => line.message), ['out 1', 'out 2, same time', 'err 1'])
  })
})
