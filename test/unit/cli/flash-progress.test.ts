import assert from 'node:assert/strict'
import {PassThrough} from 'node:stream'

import {FlashProgressView} from '../../../src/cli/flash-progress.js'
import {Output} from '../../../src/cli/output.js'

function capture(isTTY: boolean): {stream: NodeJS.WriteStream; text: () => string} {
  const stream = new PassThrough() as unknown as NodeJS.WriteStream & PassThrough
  stream.isTTY = isTTY
  let text = ''
  stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')))
  return {stream, text: () => text}
}

const WRITE = {phase: 'write' as const, bytes: 50_000_000, total: 100_000_000, fraction: 0.5, bytesPerSecond: 25_000_000}
const VERIFY = {phase: 'verify' as const, bytes: 100_000_000, total: 100_000_000, fraction: 1, bytesPerSecond: 200_000_000}

describe('cli/flash-progress FlashProgressView', function () {
  it('draws a bar with bytes, speed and ETA on a terminal, on stderr, one line a phase', function () {
    const stdout = capture(true)
    const stderr = capture(true)
    const view = FlashProgressView.for(new Output({json: false, color: false, stdout: stdout.stream, stderr: stderr.stream}))
    view.update(WRITE)
    view.update(VERIFY)
    view.done()
    assert.equal(stdout.text(), '')
    assert.match(stderr.text(), /\rFlashing  \[#{15}-{15}\]  50%  50.0 MB \/ 100 MB  25.0 MB\/s  ETA 0:02/)
    assert.match(stderr.text(), /\n\rVerifying \[#{30}\] 100%  100 MB \/ 100 MB  200 MB\/s  ETA 0:00.*\n$/)
  })

  it('prints JSON lines on stdout with --json, and nothing without a terminal', function () {
    const stdout = capture(false)
    const stderr = capture(false)
    const json = FlashProgressView.for(new Output({json: true, color: false, stdout: stdout.stream, stderr: stderr.stream}))
    json.update(WRITE)
    assert.deepEqual(JSON.parse(stdout.text()), {type: 'progress', ...WRITE})
    const quiet = FlashProgressView.for(new Output({json: false, color: false, stdout: stdout.stream, stderr: stderr.stream}))
    quiet.update(WRITE)
    quiet.done()
    assert.equal(stderr.text(), '')
  })
})
