import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {appendFileSync, mkdtempSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import {LogJournal} from '../../../src/agent/log-journal.js'
import {type LogLine, MAX_LOG_BATCH_CHARACTERS, MAX_LOG_BATCH_LINES} from '../../../src/protocol/log-line.js'
import {PROJECT_ROOT} from '../../helpers/cli.js'

const line = (message: string, extra: Partial<LogLine> = {}): LogLine => ({message, timestamp: 1000, isSystem: false, isStdErr: false, ...extra})
const messagesOf = (journal: LogJournal) => journal.takeBatch()?.lines.map((entry) => entry.message)

describe('LogJournal', () => {
  let dataDir: string
  let file: string
  const open: LogJournal[] = []
  const openJournal = (options: Parameters<typeof LogJournal.open>[1] = {}) => {
    const journal = LogJournal.open(file, options)
    open.push(journal)
    return journal
  }

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-log-journal-'))
    file = path.join(dataDir, 'logs.journal')
  })
  afterEach(() => {
    for (const journal of open.splice(0)) journal.close()
    rmSync(dataDir, {recursive: true, force: true})
  })

  it('gives back after a restart the lines not acknowledged and each stream\'s cursor, and remembers when it began', () => {
    const first = openJournal({now: () => 5})
    first.append(line('out 1'), {container: 'c1', stream: 'stdout', at: 7n, count: 1})
    first.append(line('err 1', {isStdErr: true}), {container: 'c1', stream: 'stderr', at: 8n, count: 1})
    first.acknowledge(first.takeBatch()!)
    first.append(line('out 2'), {container: 'c1', stream: 'stdout', at: 9n, count: 1})
    first.append(line('out 3, same nanosecond'), {container: 'c1', stream: 'stdout', at: 9n, count: 2})
    first.append(line('agent line', {isSystem: true}))
    first.close()

    const second = openJournal({now: () => 99})
    assert.equal(second.followSince, 5_000_000n, 'the time the journal began, not the restart')
    assert.deepEqual(second.cursor('c1', 'stdout'), {at: 9n, count: 2})
    assert.deepEqual(second.cursor('c1', 'stderr'), {at: 8n, count: 1})
    assert.equal(second.cursor('c2', 'stdout'), undefined)
    assert.deepEqual(messagesOf(second), ['out 2', 'out 3, same nanosecond', 'agent line'])
  })

  it('rebuilds from a file whose last record a kill tore, leaving that record out, and appends after it cleanly', () => {
    const first = openJournal()
    first.append(line('whole'), {container: 'c1', stream: 'stdout', at: 7n, count: 1})
    first.close()
    appendFileSync(file, '{"kind":"line","seq":2,"line":{"message":"torn","timesta')

    const second = openJournal()
    assert.deepEqual(second.cursor('c1', 'stdout'), {at: 7n, count: 1}, 'the torn line is read again from the engine')
    second.append(line('next'), {container: 'c1', stream: 'stdout', at: 8n, count: 1})
    second.close()
    for (const record of readFileSync(file, 'utf8').trimEnd().split('\n')) assert.doesNotThrow(() => JSON.parse(record), record)

    const third = openJournal()
    assert.deepEqual(messagesOf(third), ['whole', 'next'])
    assert.deepEqual(third.cursor('c1', 'stdout'), {at: 8n, count: 1})
  })

  it('keeps a batch the server refused, and takes its lines again with the newer ones in a batch of a new number', () => {
    const journal = openJournal()
    journal.append(line('a'))
    journal.append(line('b'))
    const failed = journal.takeBatch()!
    assert.equal(journal.takeBatch(), undefined, 'one batch out at a time')
    journal.append(line('c'))
    journal.release({notStored: true})
    const next = journal.takeBatch()!
    assert.deepEqual(next.lines.map((entry) => entry.message), failed.lines.map((entry) => entry.message).concat('c'))
    assert.equal(next.id.number, failed.id.number + 1)
    assert.equal(next.id.journal, failed.id.journal)
  })

  it('sends a batch whose answer was lost again as it was, with its number, also after a restart; the next one has the next number', () => {
    const journal = openJournal()
    journal.append(line('a'))
    journal.append(line('b'))
    const lost = journal.takeBatch()!
    journal.append(line('c'))
    journal.release()
    const again = journal.takeBatch()!
    assert.deepEqual(again.id, lost.id)
    assert.deepEqual(again.lines.map((entry) => entry.message), ['a', 'b'], 'the same lines, not the newer one')
    journal.close()

    // Killed while it was out: the next run sends it again, as it was, before anything else.
    const restarted = openJournal()
    const resent = restarted.takeBatch()!
    assert.deepEqual(resent.id, lost.id)
    assert.deepEqual(resent.lines.map((entry) => entry.message), ['a', 'b'])
    restarted.acknowledge(resent)
    const next = restarted.takeBatch()!
    assert.deepEqual(next.id, {journal: lost.id.journal, number: lost.id.number + 1})
    assert.deepEqual(next.lines.map((entry) => entry.message), ['c'])
    restarted.acknowledge(next)
    restarted.close()

    // Compacted on every start: the journal's id and its numbering go on.
    const third = openJournal()
    third.append(line('d'))
    assert.deepEqual(third.takeBatch()!.id, {journal: lost.id.journal, number: lost.id.number + 2})
  })

  it('fills a batch up to the server\'s per-write cap, in lines and in message characters', () => {
    const journal = openJournal()
    for (let index = 0; index < MAX_LOG_BATCH_LINES + 10; index++) journal.append(line(`short ${index}`))
    const short = journal.takeBatch()!
    assert.equal(short.lines.length, MAX_LOG_BATCH_LINES)
    journal.acknowledge(short)
    journal.acknowledge(journal.takeBatch()!)

    const long = 'x'.repeat(10_000)
    for (let index = 0; index < 120; index++) journal.append(line(long))
    const batch = journal.takeBatch()!
    assert.equal(batch.lines.length, Math.floor(MAX_LOG_BATCH_CHARACTERS / long.length))
  })

  it('drops the oldest unsent lines beyond its byte bound and tells how many once, also after a restart', () => {
    const recordBytes = (message: string, seq: number) => Buffer.byteLength(`${JSON.stringify({kind: 'line', seq, line: line(message)})}\n`)
    const first = openJournal({maxUnsentBytes: recordBytes('line 3', 3) * 3})
    for (let index = 1; index <= 5; index++) first.append(line(`line ${index}`))
    assert.equal(first.suppressed, 2)
    first.close()

    const second = openJournal({maxUnsentBytes: recordBytes('line 3', 3) * 3})
    const batch = second.takeBatch()!
    assert.deepEqual(batch.lines.map((entry) => entry.message), ['Suppressed 2 log lines while the server was unreachable', 'line 3', 'line 4', 'line 5'])
    assert.equal(batch.lines[0].isSystem, true)
    second.acknowledge(batch)
    second.close()

    const third = openJournal()
    assert.equal(third.suppressed, 0)
    assert.equal(third.takeBatch(), undefined)
  })

  it('never drops the lines of a batch the server has not answered yet: the oldest line after them goes', () => {
    const recordBytes = (message: string, seq: number) => Buffer.byteLength(`${JSON.stringify({kind: 'line', seq, line: line(message)})}\n`)
    const maxUnsentBytes = recordBytes('in flight', 1) + recordBytes('later 1', 2)
    const journal = openJournal({maxUnsentBytes})
    journal.append(line('in flight'))
    const batch = journal.takeBatch()!
    journal.append(line('later 1'))
    journal.append(line('later 2'))
    journal.acknowledge(batch)
    const expected = ['Suppressed 1 log line while the server was unreachable', 'later 2']
    assert.deepEqual(messagesOf(journal), expected)
    journal.close()
    assert.deepEqual(messagesOf(openJournal({maxUnsentBytes})), expected, 'the same after a restart')
  })

  it('rewrites itself once settled records make up most of it, so its file stays small', () => {
    const journal = openJournal({compactSlackBytes: 4096})
    for (let index = 1; index <= 300; index++) {
      journal.append(line(`line ${index}`), {container: 'c1', stream: 'stdout', at: BigInt(index), count: 1})
      journal.acknowledge(journal.takeBatch()!)
    }

    journal.append(line('unsent'))
    assert.ok(statSync(file).size < 3 * 4096, `${statSync(file).size} bytes`)
    journal.close()
    const reopened = openJournal()
    assert.deepEqual(messagesOf(reopened), ['unsent'])
    assert.deepEqual(reopened.cursor('c1', 'stdout'), {at: 300n, count: 1})
  })

  it('keeps taking lines when its file cannot grow (a full disk), and is whole again once a settled batch lets it rewrite the file', async () => {
    // A child process whose files may not grow past 16 KiB (`ulimit -f`): writes past it fail as on a full disk.
    const script = `
      const {LogJournal} = await import(${JSON.stringify(path.join(PROJECT_ROOT, 'src/agent/log-journal.ts'))})
      const line = (message) => ({message, timestamp: 1, isSystem: false, isStdErr: false})
      const journal = LogJournal.open(${JSON.stringify(file)})
      for (let index = 1; index <= 300; index++) journal.append(line('line ' + index))
      const batch = journal.takeBatch()
      journal.acknowledge(batch)
      journal.append(line('after'))
      journal.close()
      console.log(JSON.stringify(batch.lines.map((entry) => entry.message)))`
    const {stdout} = await promisify(execFile)('bash', ['-c', 'ulimit -f 16 && exec "$0" --import tsx --no-warnings --input-type=module -e "$1"', process.execPath, script], {cwd: PROJECT_ROOT})
    assert.deepEqual(JSON.parse(stdout), Array.from({length: 300}, (_, index) => `line ${index + 1}`), 'every line, also those the file had no room for')
    assert.deepEqual(messagesOf(openJournal()), ['after'], 'the file rewritten whole: the line after it is kept')
  })
})
