import assert from 'node:assert/strict'

import {LogShipper} from '../../../src/agent/log-shipper.js'
import type {LocalLogLine, LogLine} from '../../../src/protocol/log-line.js'

describe('LogShipper', () => {
  let shipper: LogShipper | undefined
  afterEach(async () => {
    await shipper?.stop()
    shipper = undefined
  })

  it('sends buffered lines in one batch', async () => {
    const batches: LogLine[][] = []
    shipper = new LogShipper({send: async (lines) => void batches.push(lines), batchIntervalMs: 60_000, now: () => 1000})
    shipper.systemLine('Starting service main', 7)
    shipper.systemLine('Started service main', 7)
    await shipper.flush()
    assert.deepEqual(batches, [[
      {message: 'Starting service main', timestamp: 1000, isSystem: true, isStdErr: false, serviceId: 7},
      {message: 'Started service main', timestamp: 1000, isSystem: true, isStdErr: false, serviceId: 7},
    ]])
  })

  it('keeps the newest lines while the server is unreachable, then says how many it dropped', async () => {
    let clock = 0
    let reachable = false
    const batches: LogLine[][] = []
    shipper = new LogShipper({
      send: async (lines) => {
        if (!reachable) throw new Error('ECONNREFUSED')
        batches.push(lines)
      },
      batchIntervalMs: 60_000,
      maxBufferedLines: 3,
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

  it('waits before trying again after a failure', async () => {
    let attempts = 0
    let clock = 0
    shipper = new LogShipper({send: async () => {
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
    shipper = new LogShipper({send: async () => {}, batchIntervalMs: 60_000, now: () => 5})
    const seen: LocalLogLine[] = []
    const unsubscribe = shipper.subscribe((line) => seen.push(line))
    shipper.systemLine('a'.repeat(20_000))
    unsubscribe()
    shipper.systemLine('unseen')
    assert.equal(seen.length, 1)
    assert.equal(seen[0].message.length, 10_000)
  })
})
