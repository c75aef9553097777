import {strict as assert} from 'node:assert'
import {existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {Readable} from 'node:stream'
import {gzipSync} from 'node:zlib'

import {pack} from 'tar-stream'

import {extractBuildContext, UnsafeContextError} from '../../../../src/server/builder/context.js'

type Entry = {name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; content?: string; linkname?: string; mode?: number; mtime?: Date}

async function tarball(entries: Entry[]): Promise<Readable> {
  const archive = pack()
  for (const entry of entries) {
    const {content, ...header} = entry
    archive.entry({type: 'file', mode: 0o644, ...header}, content ?? '')
  }

  archive.finalize()
  const chunks: Buffer[] = []
  for await (const chunk of archive) chunks.push(chunk as Buffer)
  return Readable.from([gzipSync(Buffer.concat(chunks))])
}

describe('extractBuildContext', () => {
  let root: string
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'flotilla-context-'))
  })
  afterEach(() => rmSync(root, {recursive: true, force: true}))

  it('unpacks files, directories and inner links with their modes and mtimes', async () => {
    const mtime = new Date('2024-05-06T07:08:09Z')
    const result = await extractBuildContext(
      await tarball([
        {name: 'Dockerfile', content: 'FROM scratch\n', mtime},
        {name: 'app', type: 'directory', mode: 0o755},
        {name: 'app/run.sh', content: '#!/bin/sh\necho hi\n', mode: 0o755},
        {name: 'app/current', type: 'symlink', linkname: 'run.sh'},
      ]),
      root,
    )
    assert.deepEqual(result, {bytes: 13 + 18, entries: 4})
    assert.equal(readFileSync(path.join(root, 'Dockerfile'), 'utf8'), 'FROM scratch\n')
    assert.equal(statSync(path.join(root, 'Dockerfile')).mtime.toISOString(), mtime.toISOString())
    assert.equal(statSync(path.join(root, 'app/run.sh')).mode & 0o777, 0o755)
    assert.equal(readlinkSync(path.join(root, 'app/current')), 'run.sh')
  })

  const refusals: Array<[string, Entry[], RegExp]> = [
    ['an absolute path', [{name: '/etc/passwd', content: 'x'}], /absolute path/],
    ['a path climbing out with ..', [{name: 'app/../../evil', content: 'x'}], /"\.\."/],
    ['a symlink pointing outside', [{name: 'escape', type: 'symlink', linkname: '../../etc'}], /link that escapes/],
    ['an absolute symlink', [{name: 'escape', type: 'symlink', linkname: '/etc/passwd'}], /link that escapes/],
    ['a hard link', [{name: 'a', content: 'x'}, {name: 'b', type: 'link', linkname: 'a'}], /hard link/],
  ]
  for (const [what, entries, message] of refusals) {
    it(`refuses ${what}, writing nothing outside the context`, async () => {
      await assert.rejects(extractBuildContext(await tarball(entries), root), (error: Error) => error instanceof UnsafeContextError && message.test(error.message))
      assert.equal(existsSync(path.join(path.dirname(root), 'evil')), false)
    })
  }

  it('refuses a context over the size limit and over the entry limit', async () => {
    const big = await tarball([{name: 'big.bin', content: 'x'.repeat(5000)}])
    await assert.rejects(extractBuildContext(big, root, {maxBytes: 4096, maxEntries: 10}), /larger than 4096 bytes/)
    const many = await tarball(Array.from({length: 11}, (_, index) => ({name: `f${index}`, content: 'x'})))
    await assert.rejects(extractBuildContext(many, path.join(root, 'second'), {maxBytes: 4096, maxEntries: 10}), /more than 10 entries/)
  })

  it('refuses a body that is not a gzip tar', async () => {
    await assert.rejects(extractBuildContext(Readable.from([Buffer.from('not gzip at all')]), root), /not a valid gzip'd tar/)
  })
})
