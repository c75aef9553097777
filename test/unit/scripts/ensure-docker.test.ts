import {strict as assert} from 'node:assert'
import {execFile, spawnSync} from 'node:child_process'
import {chmod, mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import {PROJECT_ROOT} from '../../helpers/cli.js'

const run = promisify(execFile)
const SCRIPT = path.join(PROJECT_ROOT, 'scripts/ensure-docker.sh')

interface ScriptResult {
  code: number
  stderr: string
}

/**
 * The script's logic against stand-ins for `docker` and `dockerd`, so that starting an engine can be tested
 * without touching the real one: the stand-in client answers only once the stand-in daemon has run.
 */
describe('scripts/ensure-docker.sh', () => {
  let folder: string
  let bin: string

  async function writeStandIn(name: string, body: string): Promise<void> {
    await writeFile(path.join(bin, name), `#!/bin/sh\n${body}\n`)
    await chmod(path.join(bin, name), 0o755)
  }

  async function runScript(): Promise<ScriptResult> {
    const env = {
      PATH: `${bin}:/usr/bin:/bin`,
      STATE: folder,
      FLOTILLA_DOCKERD_LOG: path.join(folder, 'dockerd.log'),
      FLOTILLA_DOCKERD_PIDFILE: path.join(folder, 'dockerd.pid'),
      FLOTILLA_DOCKERD_TIMEOUT: '10',
    }
    return run('bash', [SCRIPT], {env}).then(
      ({stderr}) => ({code: 0, stderr}),
      (error: {code: number; stderr: string}) => ({code: error.code, stderr: error.stderr}),
    )
  }

  beforeEach(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'flotilla-ensure-docker-'))
    bin = path.join(folder, 'bin')
    await mkdir(bin)
    await writeStandIn('docker', '[ "$1" = info ] && [ -f "$STATE/started" ]')
  })

  afterEach(async () => {
    const daemon = Number(await readFile(path.join(folder, 'dockerd.pid'), 'utf8').catch(() => ''))
    if (daemon > 0) {
      try {
        process.kill(daemon, 'SIGTERM')
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error
      }
    }

    await rm(folder, {recursive: true, force: true})
  })

  it('starts dockerd without bridge or iptables when no engine answers, and waits until one does', async () => {
    await writeStandIn('dockerd', 'echo "$@" > "$STATE/arguments"\nwhile [ "$1" != --pidfile ]; do shift; done\necho $$ > "$2"\necho "daemon log line"\ntouch "$STATE/started"\nexec sleep 60')
    const result = await runScript()
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stderr, /starting dockerd/)
    const started = (await readFile(path.join(folder, 'arguments'), 'utf8')).trim()
    assert.match(started, /^--bridge=none --iptables=false --ip-masq=false --pidfile /)
    assert.match(await readFile(path.join(folder, 'dockerd.log'), 'utf8'), /daemon log line/)
  })

  it('starts dockerd when the pidfile was left by a killed one, and waits for the slow new one to answer', async () => {
    const {pid: deadPid} = spawnSync('true')
    await writeFile(path.join(folder, 'dockerd.pid'), `${deadPid}\n`)
    await writeStandIn('dockerd', 'sleep 1\nwhile [ "$1" != --pidfile ]; do shift; done\necho $$ > "$2"\ntouch "$STATE/started"\nexec sleep 60')
    const result = await runScript()
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stderr, /starting dockerd/)
  })

  it('does nothing when an engine already answers', async () => {
    await writeFile(path.join(folder, 'started'), '')
    await writeStandIn('dockerd', 'touch "$STATE/dockerd-ran"')
    const result = await runScript()
    assert.deepEqual(result, {code: 0, stderr: ''})
    await assert.rejects(readFile(path.join(folder, 'dockerd-ran')))
  })

  it('fails with the end of the log when dockerd dies before answering', async () => {
    await writeStandIn('dockerd', 'while [ "$1" != --pidfile ]; do shift; done\necho $$ > "$2"\necho "failed to start daemon: no cgroups"\nexit 1')
    const result = await runScript()
    assert.equal(result.code, 1)
    assert.match(result.stderr, /did not answer/)
    assert.match(result.stderr, /no cgroups/)
  })

  it('says what to install when dockerd is missing', async () => {
    const result = await runScript()
    assert.equal(result.code, 1)
    assert.match(result.stderr, /apt-get install docker\.io/)
  })
})
