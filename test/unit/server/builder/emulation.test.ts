import assert from 'node:assert/strict'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {startupEmulationWarning} from '../../../../src/server/builder/emulation.js'

describe('the emulation check of server start', () => {
  let binfmt: string

  beforeEach(async () => {
    binfmt = await mkdtemp(path.join(tmpdir(), 'flotilla-binfmt-'))
  })

  afterEach(() => rm(binfmt, {recursive: true, force: true}))

  it('names the fleet platforms this machine cannot build for, and what to install', async () => {
    await writeFile(path.join(binfmt, 'status'), 'enabled\n')
    await writeFile(path.join(binfmt, 'qemu-arm'), 'enabled\ninterpreter /usr/libexec/qemu-binfmt/arm-binfmt-P\n')
    assert.equal(
      await startupEmulationWarning('x64', binfmt),
      'builds for linux/arm64 fleets need emulation, which this machine lacks — install qemu-user-static binfmt-support (apt-get install qemu-user-static binfmt-support, then update-binfmts --enable)',
    )
  })

  it('says nothing when every common platform runs natively or emulated', async () => {
    await writeFile(path.join(binfmt, 'status'), 'enabled\n')
    for (const emulator of ['qemu-aarch64', 'qemu-arm']) await writeFile(path.join(binfmt, emulator), 'enabled\n')
    assert.equal(await startupEmulationWarning('x64', binfmt), undefined)
    assert.match((await startupEmulationWarning('arm64', binfmt)) ?? '', /^builds for linux\/amd64 fleets need emulation/)
  })
})
