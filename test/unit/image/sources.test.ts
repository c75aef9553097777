import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {open} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {detectFormat, openImageSource, xzUncompressedSize} from '../../../src/image/sources.js'

describe('image/sources', function () {
  let directory: string

  before(function () {
    directory = mkdtempSync(path.join(tmpdir(), 'flotilla-sources-'))
  })

  after(function () {
    rmSync(directory, {recursive: true, force: true})
  })

  it('tells the format from the first bytes', function () {
    assert.equal(detectFormat(Buffer.from([0x1f, 0x8b, 8, 0])), 'gz')
    assert.equal(detectFormat(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 0, 0])), 'xz')
    assert.equal(detectFormat(Buffer.from('PK\u0003\u0004')), 'zip')
    assert.equal(detectFormat(Buffer.from('BZh9')), 'bz2')
    assert.equal(detectFormat(Buffer.alloc(8)), 'raw')
  })

  it('reads the decompressed size of an .xz file from its index', async function () {
    const file = path.join(directory, 'data')
    writeFileSync(file, Buffer.alloc(3_000_000, 7))
    execFileSync('xz', ['-0', '--block-size=1000000', '-k', file])
    const handle = await open(`${file}.xz`, 'r')
    assert.equal(await xzUncompressedSize(handle, (await handle.stat()).size), 3_000_000)
    await handle.close()
  })

  it('streams the largest file of a zip archive', async function () {
    const image = path.join(directory, 'os.img')
    writeFileSync(image, Buffer.alloc(200_000, 9))
    writeFileSync(path.join(directory, 'README'), 'read me')
    execFileSync('zip', ['-q', 'os.zip', 'README', 'os.img'], {cwd: directory})
    const source = await openImageSource(path.join(directory, 'os.zip'))
    assert.equal(source.format, 'zip')
    assert.equal(source.size, 200_000)
    const chunks: Buffer[] = []
    for await (const chunk of await source.stream()) chunks.push(chunk as Buffer)
    await source.close()
    assert.ok(Buffer.concat(chunks).equals(Buffer.alloc(200_000, 9)))
  })
})
