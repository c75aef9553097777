import {strict as assert} from 'node:assert'
import {execFile, spawn} from 'node:child_process'
import {chmod, mkdir, mkdtemp, rm, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {pipeline} from 'node:stream/promises'
import {promisify} from 'node:util'

import {packProject} from '../../src/project/pack.js'
import {BASE_IMAGE, ensureBaseImage} from '../helpers/docker.js'

const run = promisify(execFile)

/** `docker build -` fed with the packed project, as the builder will feed the engine. */
async function buildFromArchive(folder: string, tag: string): Promise<void> {
  const child = spawn('docker', ['build', '--network', 'host', '--quiet', '--tag', tag, '-'], {stdio: ['pipe', 'ignore', 'pipe']})
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  await pipeline(packProject(folder), child.stdin)
  const code = await exited
  if (code !== 0) throw new Error(`docker build failed (${code}): ${stderr}`)
}

describe('a packed project as a Docker build context', function () {
  this.timeout(180_000)
  let folder: string
  const tag = `flotilla-test/packed-context:${process.pid}`

  before(async () => {
    await ensureBaseImage()
    folder = await mkdtemp(path.join(tmpdir(), 'flotilla-context-'))
    await mkdir(path.join(folder, 'app/empty'), {recursive: true})
    await mkdir(path.join(folder, 'node_modules/big'), {recursive: true})
    await chmod(path.join(folder, 'app/empty'), 0o750)
    await writeFile(path.join(folder, 'Dockerfile'), `FROM ${BASE_IMAGE}\nCOPY . /project\n`)
    await writeFile(path.join(folder, '.dockerignore'), 'node_modules\n')
    await writeFile(path.join(folder, 'app/run.sh'), '#!/bin/sh\necho packed and built\n')
    await chmod(path.join(folder, 'app/run.sh'), 0o755)
    await writeFile(path.join(folder, 'app/secret.conf'), 'token\n')
    await chmod(path.join(folder, 'app/secret.conf'), 0o600)
    await symlink('run.sh', path.join(folder, 'app/start'))
    await writeFile(path.join(folder, 'node_modules/big/blob.bin'), Buffer.alloc(1024 * 1024))
  })

  after(async () => {
    await run('docker', ['rmi', tag]).catch(() => undefined)
    await rm(folder, {recursive: true, force: true})
  })

  it('builds, with modes and symlinks kept and ignored folders absent', async () => {
    await buildFromArchive(folder, tag)
    const {stdout} = await run('docker', [
      'run', '--rm', '--network', 'host', tag, 'sh', '-c',
      'cd /project && stat -c "%a %n" app/run.sh app/secret.conf app/empty && readlink app/start && ./app/start && ls',
    ])
    assert.deepEqual(stdout.trim().split('\n'), ['755 app/run.sh', '600 app/secret.conf', '750 app/empty', 'run.sh', 'packed and built', 'Dockerfile', 'app'])
  })
})
