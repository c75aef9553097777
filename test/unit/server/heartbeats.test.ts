import {strict as assert} from 'node:assert'

import type {Db} from '../../../src/server/db/database.js'
import {Heartbeats} from '../../../src/server/heartbeats.js'

/** A database whose device writes are counted, and fail while `failing` is set (a full disk). */
function deviceWrites() {
  const state = {writes: 0, failing: false}
  const chain = {set: () => chain, where: () => chain, execute: async () => {
    state.writes++
    if (state.failing) throw new Error('SQLITE_FULL: database or disk is full')
  }}
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
    assert.equal(state.writes, 3)
    await heartbeats.beatAll(linked)
    assert.equal(state.writes, 3)
    heartbeats.forget(5)
    await heartbeats.beatAll(linked)
    assert.equal(state.writes, 4)
    await heartbeats.close()
  })

  it('takes a report repeated word for word as a heartbeat, until told to forget reports', () => {
    const heartbeats = new Heartbeats(deviceWrites().db, {timeoutMs: 60_000, onError: assert.fail})
    assert.equal(heartbeats.isRepeatedReport(7, '{"status":"Idle"}'), false)
    assert.equal(heartbeats.isRepeatedReport(7, '{"status":"Idle"}'), true)
    assert.equal(heartbeats.isRepeatedReport(8, '{"status":"Idle"}'), false)
    heartbeats.forgetAll()
    assert.equal(heartbeats.isRepeatedReport(7, '{"status":"Idle"}'), false)
    void heartbeats.close()
  })
})
