import assert from 'node:assert/strict'
import {mkdtemp, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {loadConfig, saveConfig} from '../../../src/agent/config.js'
import {ExpectedError} from '../../../src/errors.js'

describe('agent config', () => {
  let directory: string
  beforeEach(async () => {
    directory = await mkdtemp(path.join(tmpdir(), 'flotilla-config-'))
  })
  afterEach(() => rm(directory, {recursive: true, force: true}))

  it('loads, and saves in one step readable by its owner only', async () => {
    const file = path.join(directory, 'config.json')
    await writeFile(file, JSON.stringify({apiEndpoint: 'http://127.0.0.1:1', uuid: 'u', deviceApiKey: 'k'}))
    const config = await loadConfig(file)
    await saveConfig(file, {...config, deviceId: 5})
    assert.equal((await loadConfig(file)).deviceId, 5)
    assert.equal((await stat(file)).mode & 0o777, 0o600)
    assert.deepEqual(await readdir(directory), ['config.json'], 'no temporary file is left behind')
    assert.match(await readFile(file, 'utf8'), /\n$/)
  })

  it('names the file it cannot read', async () => {
    const missing = path.join(directory, 'nope.json')
    await assert.rejects(loadConfig(missing), (error: unknown) => error instanceof ExpectedError && error.message === `cannot read ${missing}: ENOENT`)
  })
})
