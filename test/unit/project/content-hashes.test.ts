import {strict as assert} from 'node:assert'
import {createHash} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {hashProjectContents} from '../../../src/project/content-hashes.js'
import type {ProjectEntry} from '../../../src/project/pack.js'

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

describe('hashProjectContents', () => {
  let folder: string
  let cacheFile: string

  beforeEach(() => {
    folder = mkdtempSync(path.join(tmpdir(), 'flotilla-hashes-'))
    cacheFile = path.join(folder, 'cache', 'hashes.json')
  })

  afterEach(() => rmSync(folder, {recursive: true, force: true}))

  /** A file entry as listProjectEntries gives it, with the times and inode told. */
  function entry(name: string, content: string, stat: {mtimeMs: number; changeTimeMs: number; inode: number}): ProjectEntry {
    writeFileSync(path.join(folder, name), content)
    return {name, absolutePath: path.join(folder, name), type: 'file', mode: 0o644, mtime: new Date(stat.mtimeMs), size: Buffer.byteLength(content), changeTimeMs: stat.changeTimeMs, inode: stat.inode}
  }

  it('hashes what the archive will carry: the file, or its replacement', async () => {
    const old = {mtimeMs: 1000, changeTimeMs: 1000, inode: 1}
    const hashes = await hashProjectContents([entry('a.txt', 'alpha', old), entry('compose.yml', 'on disk', {...old, inode: 2})], {'compose.yml': 'resolved'})
    assert.deepEqual(Object.fromEntries(hashes), {'a.txt': sha256('alpha'), 'compose.yml': sha256('resolved')})
  })

  it('reads a file again unless its size, times and inode are as when it was hashed', async () => {
    const old = {mtimeMs: 1000, changeTimeMs: 1000, inode: 7}
    await hashProjectContents([entry('a.txt', 'alpha', old)], {}, cacheFile)
    // Same size, same mtime: only the ctime tells the rewrite, and it is enough.
    const rewritten = entry('a.txt', 'omega', {...old, changeTimeMs: 2000})
    assert.equal((await hashProjectContents([rewritten], {}, cacheFile)).get('a.txt'), sha256('omega'))
    // Unchanged by every measure: the remembered hash is used, the file is not read (here it says otherwise).
    const unchanged = entry('a.txt', 'sigma', {...old, changeTimeMs: 2000})
    assert.equal((await hashProjectContents([unchanged], {}, cacheFile)).get('a.txt'), sha256('omega'))
  })

  it('remembers nothing of a file changed in the last moments, which may change again unseen', async () => {
    await hashProjectContents([entry('fresh.txt', 'new', {mtimeMs: Date.now(), changeTimeMs: Date.now(), inode: 3}), entry('old.txt', 'old', {mtimeMs: 1000, changeTimeMs: 1000, inode: 4})], {}, cacheFile)
    assert.deepEqual(Object.keys(JSON.parse(readFileSync(cacheFile, 'utf8'))), [path.join(folder, 'old.txt')])
  })
})
