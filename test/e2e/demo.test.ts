import {strict as assert} from 'node:assert'
import {spawn} from 'node:child_process'

import Docker from 'dockerode'

import {PROJECT_ROOT} from '../helpers/cli.js'

describe('npm run demo: server, agent, push of examples/hello, logs --tail', function () {
  this.timeout(240_000)

  it('shows the pushed service’s output through the logs of the device it runs on, and cleans up after itself', async () => {
    const child = spawn('bash', ['scripts/demo.sh'], {
      cwd: PROJECT_ROOT,
      env: {...process.env, FLOTILLA_DEMO_LINES: '2', FLOTILLA_DEMO_PORT: '0', FLOTILLA_DEMO_SSH_PORT: '0', FLOTILLA_AGENT_API_PORT: '0', NO_COLOR: '1'},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk))
    const exitCode = await new Promise<number | null>((resolve) => child.once('exit', resolve))
    assert.equal(exitCode, 0, output)
    const uuid = /device ([\da-f]{32}) registered/.exec(output)?.[1]
    assert.ok(uuid, output)
    const lines = output.split('\n').filter((line) => line.includes(`[hello] hello from ${uuid} (hello), greeting=hi there`))
    assert.equal(lines.length, 2, output)
    assert.match(lines[0], /^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] \[hello\] /)
    // The shell in the service, through the server's SSH gateway and the device link.
    assert.match(output, /^demo: flotilla ssh [\da-f]{32} hello -- uname -sm\nLinux \S+$/m)
    const leftovers = await new Docker().listContainers({all: true, filters: {label: [`io.flotilla.device-uuid=${uuid}`]}})
    assert.deepEqual(leftovers, [])
  })
})
