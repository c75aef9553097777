import {strict as assert} from 'node:assert'

import type {Db} from '../../../src/server/db/database.js'
import {Heartbeats, IDS_PER_STATEMENT, reportDigest} from '../../../src/server/heartbeats.js'

/** A database whose device writes are counted (with the ids each one names), and fail while `failing` is set (a full disk). */
function deviceWrites() {
  const state = {writes: 0, failing: false, ids: [] as number[][]}
  let ids: number[] = []
  const chain = {
    set: () => chain,
    where: (_column: string, _operator: string, value: number[]) => {
      ids = value
      return chain
    },
    execute: async () => {
      state.writes++
      state.ids.push(ids)
      if (state.failing) throw new Error('SQLITE_FULL: database or disk is full')
    },
  }
  return {state, db: {updateTable: () => chain} as unknown as Db}
}

describe('heartbeats', () => {
  it('writes a device online at its first beat, then not again until a quarter of the timeout has passed', async () => {
    const {state, db} = deviceWrites()
    const heartbeats = new Heartbeats(db, {timeoutMs: 60_000, onError: assert.fail})
    await heartbeats.beat(7)
    await heartbeats.beat(7)
    await heartbeats.flush()
    assert.equal(state.writes, 1)
    heartbeats.forget(7)
    await heartbeats.beat(7)
    assert.equal(state.writes, 2)
    await heartbeats.close()
  })

  it('writes the devices first seen in one turn of the event loop together, each poll answered once its device is written', async () => {
    const {state, db} = deviceWrites()
    const heartbeats = new Heartbeats(db, {timeoutMs: 60_000, onError: assert.fail})
    // A server restarted under its fleet: 250 devices poll at once, none written by this server yet.
    const devices = Array.from({length: 250}, (_, index) => 250 - index)
    const writesWhenAnswered: number[] = []
    await Promise.all(devices.map((id) => heartbeats.beat(id).then(() => writesWhenAnswered.push(state.writes))))
    const statements = Math.ceil(250 / IDS_PER_STATEMENT)
    assert.equal(state.writes, statements)
    assert.deepEqual(new Set(writesWhenAnswered), new Set([statements]), 'every poll answered once all were written')
    assert.deepEqual(state.ids.flat(), [...devices].sort((a, b) => a - b))
    await heartbeats.close()
  })

  it('never fails the poll when the write fails: logs it and writes again at the next beat', async () => {
    const {state, db} = deviceWrites()
    const errors: string[] = []
    const heartbeats = new Heartbeats(db, {timeoutMs: 60_000, onError: (_error, message) => errors.push(message)})
    state.failing = true
    await heartbeats.beat(7)
    assert.equal(errors.length, 1)
    state.failing = false
    await heartbeats.beat(7)
    assert.equal(state.writes, 2)
    assert.equal(errors.length, 1)
    await heartbeats.close()
  })

  it('writes the devices holding links in chunks a statement takes, and only those whose stamp may be getting old', async () => {
    const {state, db} = deviceWrites()
    const heartbeats = new Heartbeats(db, {timeoutMs: 60_000, onError: assert.fail})
    const linked = Array.from({length: 1200}, (_, index) => index + 1)
    await heartbeats.beatAll(linked)
    const statements = Math.ceil(1200 / IDS_PER_STATEMENT)
    assert.equal(state.writes, statements)
    await heartbeats.beatAll(linked)
    assert.equal(state.writes, statements)
    heartbeats.forget(5)
    await heartbeats.beatAll(linked)
    assert.equal(state.writes, statements + 1)
    await heartbeats.close()
  })

  it('writes a batch in id order a statement per turn of the event loop, so requests are served while it is written', async () => {
    const {state, db} = deviceWrites()
    const heartbeats = new Heartbeats(db, {timeoutMs: 60_000, onError: assert.fail})
    // Devices polling in no particular order, each a heartbeat due (last written between a quarter and half the timeout ago).
    const devices = Array.from({length: 5 * IDS_PER_STATEMENT}, (_, index) => ((index * 7919) % 5000) + 1)
    await heartbeats.beatAll(devices)
    const written = state.writes
    const clock = Date.now
    Date.now = () => clock() + 20_000
    try {
      for (const id of devices) await heartbeats.beat(id)
    } finally {
      Date.now = clock
    }

    // A request arriving as the flush starts is served before the flush has written everything.
    let writesWhenServed = -1
    setImmediate(() => (writesWhenServed = state.writes - written))
    await heartbeats.flush()
    assert.equal(state.writes - written, 5)
    assert.ok(writesWhenServed >= 0 && writesWhenServed < 5, `a request arriving as the flush started waited for all of it (statements written when it ran: ${writesWhenServed}, -1 for after the flush)`)
    const flushed = state.ids.slice(written).flat()
    assert.deepEqual(flushed, [...devices].sort((a, b) => a - b))
    await heartbeats.close()
  })

  it('keeps a report another instance wrote when it is the last one written here, and forgets any other', () => {
    const told: Array<[number, string | undefined]> = []
    const heartbeats = new Heartbeats(deviceWrites().db, {timeoutMs: 60_000, onError: assert.fail, announce: (id, digest) => told.push([id, digest])})
    heartbeats.wroteOnline(7, '{"status":"Idle"}')
    heartbeats.wroteOnline(8, '{"status":"Idle"}')
    heartbeats.wroteOnline(9)
    assert.deepEqual(told, [[7, reportDigest('{"status":"Idle"}')], [8, reportDigest('{"status":"Idle"}')], [9, undefined]], 'told with its digest, a link without')
    heartbeats.reportsWrittenElsewhere([7, 8], [reportDigest('{"status":"Idle"}'), reportDigest('{"status":"Updating"}')])
    assert.equal(heartbeats.isRepeatedReport(7, '{"status":"Idle"}'), true, 'the row holds what this instance wrote last')
    assert.equal(heartbeats.isRepeatedReport(8, '{"status":"Idle"}'), false, 'the row holds another report now')
    void heartbeats.close()
  })

  it('takes a report repeated word for word as a heartbeat once it was written, until told to forget reports', () => {
    const heartbeats = new Heartbeats(deviceWrites().db, {timeoutMs: 60_000, onError: assert.fail})
    assert.equal(heartbeats.isRepeatedReport(7, '{"status":"Idle"}'), false)
    assert.equal(heartbeats.isRepeatedReport(7, '{"status":"Idle"}'), false, 'a report not (yet) written is not a repeat: its writing may fail')
    heartbeats.wroteOnline(7, '{"status":"Idle"}')
    assert.equal(heartbeats.isRepeatedReport(7, '{"status":"Idle"}'), true)
    assert.equal(heartbeats.isRepeatedReport(7, '{"status": "Idle"}'), false)
    assert.equal(heartbeats.isRepeatedReport(8, '{"status":"Idle"}'), false)
    heartbeats.forgetAll()
    assert.equal(heartbeats.isRepeatedReport(7, '{"status":"Idle"}'), false)
    void heartbeats.close()
  })
})
