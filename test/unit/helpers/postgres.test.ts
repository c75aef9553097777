import {strict as assert} from 'node:assert'
import {spawn} from 'node:child_process'
import net from 'node:net'
import path from 'node:path'

import {PROJECT_ROOT} from '../../helpers/cli.js'
import {eventually} from '../../helpers/fleet-api.js'
import {waitForExit} from '../../helpers/server.js'

const HELPER = path.join(PROJECT_ROOT, 'test/helpers/postgres.ts')
/** initdb, the cluster's start and a migrated database, on a machine that may be busy. */
const START_DEADLINE_MS = 45_000
const EXIT_DEADLINE_MS = 10_000

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => (socket.destroy(), resolve(false)))
    socket.once('error', () => resolve(true))
  })
}

describe('test/helpers/postgres.ts', function () {
  this.timeout(START_DEADLINE_MS + EXIT_DEADLINE_MS + 15_000)

  // A bench on PostgreSQL hung once its figures were printed: the process waited for the cluster, which waited for its exit.
  it('lets a process that used the cluster exit by itself once its work is done, and the cluster stops with it', async () => {
    // SIGTERM exits as the process would by itself (which stops the cluster), should the test have to end it.
    const script = `import {testPostgres} from ${JSON.stringify(HELPER)}
process.on('SIGTERM', () => process.exit(1))
const cluster = await testPostgres()
await cluster.dropDatabase(await cluster.createDatabase())
process.stdout.write(String(cluster.port))`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '--eval', script], {cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe']})
    let [stdout, stderr] = ['', '']
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    try {
      await eventually(async () => stdout || child.exitCode !== null, 'the script to use the cluster', START_DEADLINE_MS)
      assert.ok(await waitForExit(child, EXIT_DEADLINE_MS), `the process was still running ${EXIT_DEADLINE_MS} ms after its work was done`)
      assert.equal(child.exitCode, 0, stderr)
    } finally {
      child.kill('SIGTERM')
      await waitForExit(child, EXIT_DEADLINE_MS)
    }

    const port = Number(stdout)
    assert.ok(port > 0, `no port printed: ${stdout}`)
    await eventually(() => refused(port), `the cluster on port ${port} to stop`)
  })
})
