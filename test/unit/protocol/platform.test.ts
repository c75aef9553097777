import assert from 'node:assert/strict'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {emulationOf, formatPlatform, platformMatches, platformOfArch, runsNatively} from '../../../src/protocol/platform.js'

describe('platforms of fleets and images', () => {
  it('maps balena CPU architectures to the engine\'s platforms', () => {
    const platforms = Object.fromEntries(['aarch64', 'armv7hf', 'armv6hf', 'rpi', 'i386', 'amd64'].map((arch) => [arch, formatPlatform(platformOfArch(arch) ?? {os: '?', architecture: '?'})]))
    assert.deepEqual(platforms, {aarch64: 'linux/arm64', armv7hf: 'linux/arm/v7', armv6hf: 'linux/arm/v6', rpi: 'linux/arm/v6', i386: 'linux/386', amd64: 'linux/amd64'})
    assert.equal(platformOfArch('sparc'), undefined)
  })

  it('matches an image without a variant to any variant, and tells what a CPU runs natively', () => {
    assert.ok(platformMatches({os: 'linux', architecture: 'arm'}, {os: 'linux', architecture: 'arm', variant: 'v7'}))
    assert.ok(!platformMatches({os: 'linux', architecture: 'arm', variant: 'v6'}, {os: 'linux', architecture: 'arm', variant: 'v7'}))
    assert.ok(!platformMatches({os: 'linux', architecture: 'amd64'}, {os: 'linux', architecture: 'arm64'}))
    assert.ok(runsNatively('x86_64', 'amd64') && runsNatively('x64', '386') && runsNatively('aarch64', 'arm64'))
    assert.ok(!runsNatively('x86_64', 'arm64'))
  })

  it('reads emulation from binfmt_misc: enabled, disabled, missing, or unknown when it is not mounted', async () => {
    const folder = await mkdtemp(path.join(tmpdir(), 'flotilla-binfmt-'))
    try {
      assert.equal(await emulationOf('arm64', folder), 'unknown')
      await writeFile(path.join(folder, 'status'), 'enabled\n')
      assert.equal(await emulationOf('arm64', folder), 'missing')
      await writeFile(path.join(folder, 'qemu-aarch64'), 'disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n')
      assert.equal(await emulationOf('arm64', folder), 'disabled')
      await writeFile(path.join(folder, 'qemu-aarch64'), 'enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n')
      assert.equal(await emulationOf('arm64', folder), 'enabled')
      assert.equal(await emulationOf('test-cpu', folder), 'missing')
    } finally {
      await rm(folder, {recursive: true, force: true})
    }
  })
})
