import {strict as assert} from 'node:assert'
import {createHash} from 'node:crypto'
import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {scanImagesDir, sha256OfFile} from '../../../src/server/os-images.js'
import {parseRange} from '../../../src/server/routes/os-download.js'

describe('OS image downloads (server)', () => {
  it('parses one byte range of a Range header', () => {
    assert.deepEqual(parseRange('bytes=0-99', 1000), {start: 0, end: 99})
    assert.deepEqual(parseRange('bytes=500-', 1000), {start: 500, end: 999})
    assert.deepEqual(parseRange('bytes=900-5000', 1000), {start: 900, end: 999})
    assert.deepEqual(parseRange('bytes=-100', 1000), {start: 900, end: 999})
    assert.deepEqual(parseRange('bytes=-5000', 1000), {start: 0, end: 999})
    assert.deepEqual(parseRange('BYTES = 1 - 2', 1000), {start: 1, end: 2})
  })

  it('says unsatisfiable for ranges past the end, and ignores what it cannot honour', () => {
    assert.equal(parseRange('bytes=1000-', 1000), 'unsatisfiable')
    assert.equal(parseRange('bytes=99999999999-', 1000), 'unsatisfiable')
    assert.equal(parseRange('bytes=5000-6000', 1000), 'unsatisfiable')
    assert.equal(parseRange('bytes=-0', 1000), 'unsatisfiable')
    assert.equal(parseRange('bytes=0-', 0), 'unsatisfiable')
    for (const ignored of [undefined, '', 'bytes=', 'bytes=-', 'bytes=5-2', 'bytes=0-1,5-6', 'items=0-1', 'bytes=a-b']) {
      assert.equal(parseRange(ignored, 1000), undefined, String(ignored))
    }
  })

  it('finds one image a version folder, raw first, with its bmap, and skips folders without one', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flotilla-images-'))
    try {
      const folder = path.join(dir, 'raspberrypi4-64', '5.1.20+rev1')
      mkdirSync(folder, {recursive: true})
      writeFileSync(path.join(folder, 'balena.img.gz'), 'gz')
      writeFileSync(path.join(folder, 'balena.img'), 'raw image')
      writeFileSync(path.join(folder, 'balena.bmap'), '<bmap/>')
      writeFileSync(path.join(folder, 'notes.txt'), 'not an image')
      mkdirSync(path.join(dir, 'raspberrypi4-64', 'empty'))
      mkdirSync(path.join(dir, 'raspberrypi4-64', 'bad name!'))
      const versions = await scanImagesDir(dir)
      assert.equal(versions.length, 1)
      assert.equal(versions[0].version, '5.1.20+rev1')
      assert.deepEqual(versions[0].files.map((file) => file.fileType), ['.img', '.gz'])
      assert.equal(versions[0].bmap, path.join(folder, 'balena.bmap'))
      assert.equal(await sha256OfFile(path.join(folder, 'balena.img')), createHash('sha256').update('raw image').digest('base64'))
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })
})
