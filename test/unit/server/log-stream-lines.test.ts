import {strict as assert} from 'node:assert'

import {type LogLine, MAX_LOG_MESSAGE_LENGTH, TRUNCATED_MARK, truncateLogMessage} from '../../../src/protocol/log-line.js'
import {HttpError} from '../../../src/server/http-errors.js'
import {logLinesOfNdjson, MAX_LOG_LINE_BYTES, salvageLongLine} from '../../../src/server/log-stream-lines.js'

async function collect(chunks: Iterable<Buffer | string> | AsyncIterable<Buffer | string>, limits = {maxLineBytes: MAX_LOG_LINE_BYTES, maxBodyBytes: 16 * 1024 * 1024}): Promise<LogLine[]> {
  const lines: LogLine[] = []
  for await (const line of logLinesOfNdjson(chunks as AsyncIterable<Buffer | string>, limits)) lines.push(line)
  return lines
}

const line = (message: string, extra: Partial<LogLine> = {}): LogLine => ({message, timestamp: 7, isSystem: false, isStdErr: true, serviceId: 3, ...extra})

describe('log-stream line parser', () => {
  it('reads NDJSON lines split anywhere across chunks, skipping what is not a log line', async () => {
    const text = `${JSON.stringify(line('héllo'))}\r\n\nnot json\n{"timestamp":1}\n${JSON.stringify(line('last'))}`
    const bytes = Buffer.from(text)
    const chunks = [...bytes].map((byte) => Buffer.from([byte]))
    assert.deepEqual(await collect(chunks), [line('héllo'), line('last')])
  })

  it('cuts a line over the cap and marks it, keeping the fields after its message', async () => {
    const long = 'x'.repeat(200_000)
    const lines = await collect([`${JSON.stringify(line(long, {timestamp: 1234, serviceId: 9}))}\n`, `${JSON.stringify(line('next'))}\n`])
    assert.equal(lines.length, 2)
    assert.equal(lines[0].message.length, MAX_LOG_MESSAGE_LENGTH)
    assert.ok(lines[0].message.endsWith(TRUNCATED_MARK))
    assert.deepEqual({...lines[0], message: ''}, {...line('', {timestamp: 1234, serviceId: 9})})
    assert.deepEqual(lines[1], line('next'))
  })

  it('never holds more than the cap of a line that has no newline', async () => {
    let served = 0
    async function* endless(): AsyncGenerator<Buffer> {
      yield Buffer.from('{"message":"')
      const chunk = Buffer.alloc(64 * 1024, 'a')
      for (let index = 0; index < 200; index++) {
        served += chunk.length
        yield chunk
      }
    }

    const before = process.memoryUsage().arrayBuffers
    const lines = await collect(endless())
    assert.equal(served, 200 * 64 * 1024)
    assert.ok(process.memoryUsage().arrayBuffers - before < 4 * 1024 * 1024, 'the 12.5 MiB line was not kept')
    assert.equal(lines.length, 1)
    assert.equal(lines[0].message, truncateLogMessage('a'.repeat(MAX_LOG_MESSAGE_LENGTH + 1)))
  })

  it('refuses a body over the limit with 413, after the lines before it', async () => {
    const lines: LogLine[] = []
    const body = [`${JSON.stringify(line('kept'))}\n`, 'y'.repeat(2000)]
    await assert.rejects(
      (async () => {
        for await (const parsed of logLinesOfNdjson(body as unknown as AsyncIterable<string>, {maxLineBytes: 1000, maxBodyBytes: 1024})) lines.push(parsed)
      })(),
      (error: unknown) => error instanceof HttpError && error.statusCode === 413 && /at most 1024 bytes once decompressed/.test(error.message),
    )
    assert.deepEqual(lines, [line('kept')])
  })

  it('salvages a cut line: whole escapes only, the fields from either side, nothing without a message', () => {
    assert.deepEqual(salvageLongLine('{"timestamp":5,"message":"a\\u00e9\\n\\u00', ',"isStdErr":true}'), {message: `aé\n${TRUNCATED_MARK}`, timestamp: 5, isSystem: false, isStdErr: true})
    const whole = salvageLongLine('{"message":"whole","junk":"zzzz', 'zz","isSystem":true,"serviceId":4}')
    assert.deepEqual({...whole, timestamp: 0}, {message: 'whole', timestamp: 0, isSystem: true, isStdErr: false, serviceId: 4})
    assert.equal(salvageLongLine('{"junk":"zzzz', 'zz"}'), undefined)
  })

  it('cuts long messages to the limit with the mark, never splitting a surrogate pair', () => {
    assert.equal(truncateLogMessage('short'), 'short')
    const emoji = '😀'.repeat(MAX_LOG_MESSAGE_LENGTH)
    const cut = truncateLogMessage(emoji)
    assert.ok(cut.length <= MAX_LOG_MESSAGE_LENGTH)
    assert.ok(cut.endsWith(TRUNCATED_MARK))
    assert.equal(cut.slice(0, -TRUNCATED_MARK.length), '😀'.repeat((cut.length - TRUNCATED_MARK.length) / 2))
  })
})
