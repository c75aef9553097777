import assert from 'node:assert/strict'
import {mkdtemp, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {loadConfig, MIN_POLL_INTERVAL_MS, pollIntervalOf, saveConfig} from '../../../src/agent/config.js'
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

  it('refuses an appUpdatePollInterval that is not a positive number, naming the field, the value and the fix', async () => {
    const file = path.join(directory, 'config.json')
    for (const interval of [0, -5, 'soon', '', true, {}]) {
      await writeFile(file, JSON.stringify({apiEndpoint: 'http://127.0.0.1:1', uuid: 'u', deviceApiKey: 'k', appUpdatePollInterval: interval}))
      await assert.rejects(
        loadConfig(file),
        (error: unknown) => error instanceof ExpectedError && error.message === `${file} has "appUpdatePollInterval": ${JSON.stringify(interval)}, which is not a positive number of milliseconds; set it to e.g. 900000 (15 minutes) or remove it`,
        `appUpdatePollInterval ${JSON.stringify(interval)}`,
      )
    }
  })

  it('raises a poll interval below the minimum to it, takes numeric strings as balena writes them, and defaults to 15 minutes', () => {
    const base = {apiEndpoint: 'http://127.0.0.1:1', uuid: 'u', deviceApiKey: 'k'}
    assert.equal(MIN_POLL_INTERVAL_MS, 10_000)
    assert.deepEqual(pollIntervalOf({...base, appUpdatePollInterval: 1}), {intervalMs: MIN_POLL_INTERVAL_MS, raisedFrom: 1})
    assert.deepEqual(pollIntervalOf({...base, appUpdatePollInterval: '60000' as unknown as number}), {intervalMs: 60_000})
    assert.deepEqual(pollIntervalOf(base), {intervalMs: 15 * 60_000})
  })

  it('names the file it cannot read', async () => {
    const missing = path.join(directory, 'nope.json')
    await assert.rejects(loadConfig(missing), (error: unknown) => error instanceof ExpectedError && error.message === `cannot read ${missing}: ENOENT`)
  })
})
