import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {open} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {detectFormat, findProgram, openImageSource, xzUncompressedSize} from '../../../src/image/sources.js'

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

  describe('.bz2', function () {
    this.timeout(30_000)
    const content = Buffer.concat([Buffer.alloc(3_000_000, 5), Buffer.from(Array.from({length: 500_000}, (_, index) => (index * 7919) % 251))])
    let bz2: string

    before(function () {
      const file = path.join(directory, 'bz.img')
      writeFileSync(file, content)
      execFileSync('bzip2', ['-1', '-k', '-f', file])
      bz2 = `${file}.bz2`
    })

    async function decompressed(file: string): Promise<Buffer> {
      const source = await openImageSource(file)
      assert.equal(source.format, 'bz2')
      const chunks: Buffer[] = []
      try {
        for await (const chunk of await source.stream()) chunks.push(chunk as Buffer)
      } finally {
        await source.close()
      }

      return Buffer.concat(chunks)
    }

    async function withPath<T>(searchPath: string, run: () => Promise<T>): Promise<T> {
      const saved = process.env.PATH
      process.env.PATH = searchPath
      try {
        return await run()
      } finally {
        process.env.PATH = saved
      }
    }

    it('finds a native decompressor on PATH, and none on an empty one', async function () {
      assert.match((await findProgram(['lbzip2', 'bzip2'])) ?? '', /\/(lbzip2|bzip2)$/)
      assert.equal(await findProgram(['bzip2'], ''), undefined)
    })

    it('streams a .bz2 image through the native program, and through unbzip2-stream without one', async function () {
      assert.ok((await decompressed(bz2)).equals(content))
      assert.ok((await withPath('', () => decompressed(bz2))).equals(content))
    })

    it('keeps the last blocks of a bzip2 -9 file of barely compressible data when decompressing without a native program', async function () {
      // Bytes that barely compress, so the compressed file arrives in many chunks, as a real image's does.
      const text = randomBytes(4_000_000)
      const file = path.join(directory, 'text.img')
      writeFileSync(file, text)
      execFileSync('bzip2', ['-9', '-k', '-f', file])
      assert.ok((await withPath('', () => decompressed(`${file}.bz2`))).equals(text))
    })

    it('fails a corrupt or truncated .bz2 instead of ending it early', async function () {
      const compressed = readFileSync(bz2)
      const corrupt = Buffer.from(compressed)
      corrupt[Math.floor(corrupt.length / 2)] ^= 0xff
      writeFileSync(path.join(directory, 'corrupt.img.bz2'), corrupt)
      writeFileSync(path.join(directory, 'truncated.img.bz2'), compressed.subarray(0, Math.floor(compressed.length * 0.7)))
      for (const name of ['corrupt.img.bz2', 'truncated.img.bz2']) {
        await assert.rejects(decompressed(path.join(directory, name)), (error: Error) => {
          assert.match(error.message, new RegExp(`${name.replaceAll('.', '\\.')} is not a readable \\.bz2 file \\((lbzip2|bzip2): .+\\)$`))
          return true
        })
      }
    })
  })
})
