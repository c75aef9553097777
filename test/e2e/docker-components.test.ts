import {strict as assert} from 'node:assert'
import {execFile} from 'node:child_process'
import {mkdtemp, rm, symlink} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {promisify} from 'node:util'

import {PROJECT_ROOT} from '../helpers/cli.js'
import {BASE_IMAGE, ensureBaseImage, ensureDocker, type RunningRegistry, startRegistry} from '../helpers/docker.js'

const run = promisify(execFile)

async function docker(...args: string[]): Promise<string> {
  const {stdout} = await run('docker', args, {timeout: 120_000})
  return stdout.trim()
}

async function commandPath(name: string): Promise<string> {
  return (await run('bash', ['-c', `command -v ${name}`])).stdout.trim()
}

describe('real Docker components', function () {
  this.timeout(180_000)

  before(async () => {
    await ensureDocker()
    await ensureBaseImage()
  })

  it('has an engine that answers, and ensure-docker.sh leaves it alone when it does', async () => {
    const {stdout, stderr} = await run('bash', [path.join(PROJECT_ROOT, 'scripts/ensure-docker.sh')])
    assert.equal(stdout + stderr, '')
    assert.match(await docker('info', '--format', '{{.ServerVersion}}'), /^\d+\./)
  })

  it('says what to install when there is no engine and no dockerd', async () => {
    // A PATH holding the docker client alone: wherever dockerd lives on this machine, the script cannot find it.
    const onlyDocker = await mkdtemp(path.join(tmpdir(), 'flotilla-only-docker-'))
    await symlink(await commandPath('docker'), path.join(onlyDocker, 'docker'))
    const error = await run(await commandPath('bash'), [path.join(PROJECT_ROOT, 'scripts/ensure-docker.sh')], {
      env: {PATH: onlyDocker, DOCKER_HOST: 'unix:///nonexistent/docker.sock'},
    }).then(
      () => assert.fail('ensure-docker.sh succeeded without an engine'),
      (failure: {code: number; stderr: string}) => failure,
    )
    await rm(onlyDocker, {recursive: true, force: true})
    assert.notEqual(error.code, 0)
    assert.match(error.stderr, /dockerd is not installed/)
    assert.match(error.stderr, /apt-get install docker\.io/)
  })

  it('builds a base image from busybox-static with its applets, /tmp and /etc/passwd, once', async () => {
    const image = `flotilla-test/busybox:probe-${process.pid}`
    const script = path.join(PROJECT_ROOT, 'scripts/make-base-image.sh')
    try {
      await run('bash', [script, image])
      const firstId = await docker('image', 'inspect', '--format', '{{.Id}}', image)
      const listing = await docker('run', '--rm', '--network', 'host', image, 'sh', '-c', 'ls -ld /tmp | cut -c1-10; readlink /bin/sh; wget --help 2>&1 | head -n1 | cut -d" " -f1; grep ^root: /etc/passwd')
      assert.deepEqual(listing.split('\n'), ['drwxrwxrwt', '/bin/busybox', 'BusyBox', 'root:x:0:0:root:/root:/bin/sh'])
      await run('bash', [script, image])
      assert.equal(await docker('image', 'inspect', '--format', '{{.Id}}', image), firstId)
    } finally {
      await docker('rmi', image).catch(() => '')
    }
  })

  it('runs the busybox base image with host networking', async () => {
    assert.equal(await docker('run', '--rm', '--network', 'host', BASE_IMAGE, 'sh', '-c', 'echo hello from $(cat /etc/passwd | cut -d: -f1 | head -n1)'), 'hello from root')
  })

  describe('a loopback registry', () => {
    let registry: RunningRegistry | undefined
    let pushedTag: string | undefined

    afterEach(async () => {
      if (pushedTag) await docker('rmi', pushedTag).catch(() => '')
      await registry?.stop()
      registry = undefined
      pushedTag = undefined
    })

    it('accepts a push of the base image and lists its tag', async () => {
      registry = await startRegistry()
      assert.match(registry.address, /^127\.0\.0\.1:\d+$/)
      pushedTag = `${registry.address}/flotilla-test/busybox:e2e`
      await docker('tag', BASE_IMAGE, pushedTag)
      await docker('push', pushedTag)
      const response = await fetch(`http://${registry.address}/v2/flotilla-test/busybox/tags/list`)
      assert.equal(response.status, 200)
      assert.deepEqual(await response.json(), {name: 'flotilla-test/busybox', tags: ['e2e']})
    })

    it('stops cleanly and frees its port', async () => {
      registry = await startRegistry()
      const {address} = registry
      await registry.stop()
      registry = undefined
      await assert.rejects(fetch(`http://${address}/v2/`, {signal: AbortSignal.timeout(2000)}))
    })
  })
})
