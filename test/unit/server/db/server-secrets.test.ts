import {strict as assert} from 'node:assert'
import {createPrivateKey, generateKeyPairSync} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {loadSigningSecret} from '../../../../src/server/auth/tokens.js'
import {type Db, openDatabase} from '../../../../src/server/db/database.js'
import {sharedSecret} from '../../../../src/server/db/server-secrets.js'
import {loadGatewayHostKey} from '../../../../src/server/gateway/ssh-server.js'
import {generateHostKey, publicHostKeyOf} from '../../../../src/protocol/host-key.js'
import {libtrustKeyId, loadRegistryTokenKey} from '../../../../src/server/registry/token-key.js'
import {DIALECTS, testPostgres} from '../../../helpers/postgres.js'

describe("the server's secrets, shared by every instance on one database", () => {
  let dataDir: string
  const opened: Db[] = []

  beforeEach(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'flotilla-secrets-'))
  })

  afterEach(async () => {
    for (const db of opened.splice(0)) await db.destroy()
    rmSync(dataDir, {recursive: true, force: true})
  })

  /** Two handles on one database, as two server processes would have. */
  async function twoInstances(dialect: (typeof DIALECTS)[number]): Promise<[Db, Db]> {
    const location = dialect === 'sqlite' ? {dataDir} : {url: await (await testPostgres()).createDatabase()}
    const first = await openDatabase(location)
    opened.push(first)
    const second = await openDatabase(location)
    opened.push(second)
    return [first, second]
  }

  for (const dialect of DIALECTS) {
    describe(`on ${dialect}`, () => {
      it('gives two instances starting at once the same secrets, each made once', async () => {
        const [first, second] = await twoInstances(dialect)
        let made = 0
        const make = async () => `secret ${++made}`
        const values = await Promise.all([sharedSecret(first, 'session-signing', make), sharedSecret(second, 'session-signing', make)])
        assert.equal(values[0], values[1])
        assert.equal(await sharedSecret(second, 'session-signing', make), values[0])
        const [signingA, signingB] = await Promise.all([loadSigningSecret(first, undefined), loadSigningSecret(second, undefined)])
        assert.deepEqual(signingA, signingB)
        assert.equal(signingA.length, 32)
        const [hostA, hostB] = await Promise.all([loadGatewayHostKey(first, undefined), loadGatewayHostKey(second, undefined)])
        assert.equal(publicHostKeyOf(hostA), publicHostKeyOf(hostB))
        const [registryA, registryB] = await Promise.all([loadRegistryTokenKey(first, undefined), loadRegistryTokenKey(second, undefined)])
        assert.equal(registryA.keyId, registryB.keyId)
      })

      it('replaces a stored secret that cannot be used, once, and keeps a usable one', async () => {
        const [first, second] = await twoInstances(dialect)
        await first.insertInto('server_secret').values({name: 'ssh-host-key', value: 'not a key'}).execute()
        const [hostA, hostB] = await Promise.all([loadGatewayHostKey(first, undefined), loadGatewayHostKey(second, undefined)])
        assert.notEqual(hostA, 'not a key')
        assert.equal(hostA, hostB)
        assert.equal(await loadGatewayHostKey(first, undefined), hostA)
      })
    })
  }

  it("takes over the secrets an older server kept in its data dir, so its sessions, pinned host key and registry trust survive the upgrade", async () => {
    const olderSigning = Buffer.alloc(32, 7).toString('base64')
    const olderHost = generateHostKey()
    const olderRegistryKey = generateKeyPairSync('ec', {namedCurve: 'P-256'}).privateKey.export({type: 'pkcs8', format: 'pem'}) as string
    writeFileSync(path.join(dataDir, 'jwt-secret'), `${olderSigning}\n`)
    writeFileSync(path.join(dataDir, 'ssh_host_ed25519_key'), olderHost)
    writeFileSync(path.join(dataDir, 'registry-token.key'), olderRegistryKey)
    const db = await openDatabase({dataDir})
    opened.push(db)
    assert.equal(Buffer.from(await loadSigningSecret(db, dataDir)).toString('base64'), olderSigning)
    assert.equal(await loadGatewayHostKey(db, dataDir), olderHost)
    const registryKey = await loadRegistryTokenKey(db, dataDir)
    assert.equal(registryKey.keyId, libtrustKeyId(createPrivateKey(olderRegistryKey)))
    assert.match(readFileSync(registryKey.certificateFile!, 'utf8'), /BEGIN CERTIFICATE/)
    // A file written after the move is not read again: the database is where the secret lives now.
    writeFileSync(path.join(dataDir, 'jwt-secret'), Buffer.alloc(32, 9).toString('base64'))
    assert.equal(Buffer.from(await loadSigningSecret(db, dataDir)).toString('base64'), olderSigning)
  })
})
