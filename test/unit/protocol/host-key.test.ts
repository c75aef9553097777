import assert from 'node:assert/strict'

import ssh2 from 'ssh2'

import {generateHostKey} from '../../../src/protocol/host-key.js'

describe('SSH host keys', () => {
  it('is never one ssh2 cannot read back, though ssh2 generates one such ed25519 key in about 256', () => {
    let unreadable: string | undefined
    for (let tries = 0; !unreadable && tries < 20_000; tries++) {
      const key = ssh2.utils.generateKeyPairSync('ed25519').private
      if (ssh2.utils.parseKey(key) instanceof Error) unreadable = key
    }

    assert.ok(unreadable, 'ssh2 generated no unreadable key: the workaround may no longer be needed')
    const drawn: string[] = []
    const key = generateHostKey(() => {
      const next = drawn.length === 0 ? (unreadable as string) : ssh2.utils.generateKeyPairSync('ed25519').private
      drawn.push(next)
      return next
    })
    assert.equal(drawn.length, 2)
    assert.equal(key, drawn[1])
    assert.ok(!(ssh2.utils.parseKey(key) instanceof Error))
  })

  it('gives up with a message rather than looping for ever', () => {
    assert.throws(() => generateHostKey(() => 'not a key'), /could not generate an SSH host key/)
  })
})
