import assert from 'node:assert/strict'

import ssh2 from 'ssh2'

import {isAuthorizedKey, parseAuthorizedKeys} from '../../../src/protocol/authorized-keys.js'

function keyPair(type: 'ed25519' | 'ecdsa' = 'ed25519') {
  const pair = type === 'ecdsa' ? ssh2.utils.generateKeyPairSync('ecdsa', {bits: 256}) : ssh2.utils.generateKeyPairSync('ed25519')
  const privateKey = ssh2.utils.parseKey(pair.private)
  if (privateKey instanceof Error || Array.isArray(privateKey)) throw new Error('cannot parse the generated key')
  return {publicLine: `${pair.public.trim()} someone@laptop`, privateKey}
}

function offerOf(pair: ReturnType<typeof keyPair>, signedData?: Buffer) {
  return {
    key: {algo: pair.privateKey.type, data: pair.privateKey.getPublicSSH()},
    blob: signedData,
    signature: signedData && pair.privateKey.sign(signedData),
  }
}

describe('authorized keys', () => {
  const alice = keyPair()
  const bob = keyPair('ecdsa')

  it('reads OpenSSH lines, skipping blanks, comments, garbage and lines with options', () => {
    const keys = parseAuthorizedKeys(['', '# mine', alice.publicLine, 'not a key', `from="10.0.0.1" ${bob.publicLine}`, `  ${bob.publicLine}  `])
    assert.deepEqual(
      keys.map((key) => key.type),
      ['ssh-ed25519', 'ecdsa-sha2-nistp256'],
    )
  })

  it('accepts a listed key offered without a signature, and with a good one', () => {
    const keys = parseAuthorizedKeys([alice.publicLine])
    assert.equal(isAuthorizedKey(keys, offerOf(alice)), true)
    assert.equal(isAuthorizedKey(keys, offerOf(alice, Buffer.from('session data'))), true)
  })

  it('refuses a key not listed, and a listed key with a signature over other data', () => {
    const keys = parseAuthorizedKeys([alice.publicLine])
    assert.equal(isAuthorizedKey(keys, offerOf(bob, Buffer.from('session data'))), false)
    const forged = {...offerOf(alice, Buffer.from('session data')), blob: Buffer.from('other data')}
    assert.equal(isAuthorizedKey(keys, forged), false)
    assert.equal(isAuthorizedKey([], offerOf(alice)), false)
  })
})
