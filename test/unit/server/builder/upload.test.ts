import {strict as assert} from 'node:assert'
import {existsSync, mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {Readable} from 'node:stream'
import {gzipSync} from 'node:zlib'

import {extract, type Header, pack} from 'tar-stream'

import {createProjectIgnore} from '../../../../src/project/ignore.js'
import {BuildContextError, DEFAULT_UPLOAD_LIMITS, UploadedProject, type UploadLimits} from '../../../../src/server/builder/upload.js'

type Entry = Partial<Header> & {name: string; content?: string | Buffer}

async function tarBytes(entries: Entry[]): Promise<Buffer> {
  const archive = pack()
  for (const entry of entries) {
    const {content, ...header} = entry
    archive.entry({type: 'file', mode: 0o644, ...header}, content ?? '')
  }

  archive.finalize()
  const chunks: Buffer[] = []
  for await (const chunk of archive) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** Where the tests' uploads spool: a folder of their own, so that a spool left behind is seen whatever else runs. */
let spoolParent: string

async function upload(entries: Entry[], limits?: Partial<UploadLimits>): Promise<UploadedProject> {
  return UploadedProject.receive(Readable.from([gzipSync(await tarBytes(entries))]), {...DEFAULT_UPLOAD_LIMITS, ...limits}, spoolParent)
}

interface UnpackedEntry {
  type: string
  mode?: number
  mtime?: Date
  content: string
  linkname?: string
}

async function unpack(tar: Readable): Promise<Map<string, UnpackedEntry>> {
  const entries = new Map<string, UnpackedEntry>()
  const reader = extract()
  tar.pipe(reader)
  for await (const entry of reader) {
    const chunks: Buffer[] = []
    for await (const chunk of entry) chunks.push(chunk as Buffer)
    const {header} = entry
    entries.set(header.name, {type: header.type ?? 'file', mode: header.mode, mtime: header.mtime, content: Buffer.concat(chunks).toString(), linkname: header.linkname ?? undefined})
  }

  return entries
}

function spools(): string[] {
  return readdirSync(spoolParent)
}

describe('UploadedProject', () => {
  beforeEach(() => {
    spoolParent = mkdtempSync(path.join(tmpdir(), 'flotilla-upload-test-'))
  })
  afterEach(() => rmSync(spoolParent, {recursive: true, force: true}))

  it('reads files, folders and links as data, and makes a service context tar from them with modes, mtimes and links kept', async () => {
    const mtime = new Date('2024-05-06T07:08:09Z')
    const project = await upload([
      {name: './', type: 'directory'},
      {name: './Dockerfile', content: 'FROM scratch\n', mtime},
      {name: 'api/', type: 'directory', mode: 0o755},
      {name: 'api/run.sh', content: '#!/bin/sh\necho hi\n', mode: 0o755},
      {name: 'api/current', type: 'symlink', linkname: 'run.sh'},
      {name: 'api/big.bin', content: Buffer.alloc(600 * 1024, 7)},
      {name: 'api/.dockerignore', content: 'secret.txt\n'},
      {name: 'api/secret.txt', content: 'no'},
      {name: 'api/Dockerfile.template', content: 'FROM %%BALENA_ARCH%%\n'},
      {name: 'shared', type: 'symlink', linkname: 'api'},
    ])
    try {
      assert.equal(await project.readText('Dockerfile'), 'FROM scratch\n')
      assert.equal(await project.readText('shared/current'), '#!/bin/sh\necho hi\n', 'links are followed inside the project')
      assert.equal(await project.kind('api'), 'directory')
      assert.equal(await project.kind('shared'), 'directory')
      assert.equal(await project.kind('api/run.sh'), 'file')
      assert.equal(await project.kind('missing'), undefined)
      assert.equal(await project.readText('../etc/passwd'), undefined)
      assert.equal(await project.readText('/etc/passwd'), undefined)

      const context = await unpack(project.contextTar('shared', createProjectIgnore('secret.txt'), {'.flotilla.Dockerfile': 'FROM resolved\n'}))
      assert.deepEqual([...context.keys()].sort(), ['.dockerignore', '.flotilla.Dockerfile', 'Dockerfile.template', 'big.bin', 'current', 'run.sh'])
      assert.equal(context.get('run.sh')?.mode, 0o755)
      assert.equal(context.get('current')?.linkname, 'run.sh')
      assert.equal(context.get('big.bin')?.content, Buffer.alloc(600 * 1024, 7).toString())
      assert.equal(context.get('.flotilla.Dockerfile')?.content, 'FROM resolved\n')

      const root = await unpack(project.contextTar('.', createProjectIgnore('')))
      assert.equal(root.get('Dockerfile')?.mtime?.toISOString(), mtime.toISOString())
      assert.equal(root.get('shared')?.linkname, 'api')
    } finally {
      await project.dispose()
    }

    assert.deepEqual(spools(), [], 'dispose removes the spool')
  })

  const refusals: Array<[string, Entry[], RegExp]> = [
    ['an absolute path', [{name: '/etc/passwd', content: 'x'}], /absolute path: "\/etc\/passwd"/],
    ['a path with ..', [{name: 'app/../../evil', content: 'x'}], /path with "\.\.": "app\/\.\.\/\.\.\/evil"/],
    ['a link pointing outside', [{name: 'escape', type: 'symlink', linkname: '../../etc'}], /link that escapes it: "escape" → "\.\.\/\.\.\/etc"/],
    ['an absolute link', [{name: 'escape', type: 'symlink', linkname: '/etc/passwd'}], /link that escapes it: "escape" → "\/etc\/passwd"/],
    ['a hard link', [{name: 'a', content: 'x'}, {name: 'b', type: 'link', linkname: 'a'}], /hard link, which is not supported: "b"/],
    ['a character device', [{name: 'tty', type: 'character-device', devmajor: 5, devminor: 0}], /"tty", a character-device/],
    ['a FIFO', [{name: 'pipe', type: 'fifo'}], /"pipe", a fifo/],
    ['a name given twice', [{name: 'a', content: 'x'}, {name: 'a', content: 'y'}], /holds "a" twice/],
    ['a file that is also a folder', [{name: 'a/b', content: 'x'}, {name: 'a', content: 'y'}], /"a" both as a folder and as a file/],
    // The attack that wrote outside the build folder: `d -> .`, then `d/e -> ..` through it, then `e/x/y.txt`.
    ['an entry placed through a link (d -> ., d/e -> ..)', [{name: 'd', type: 'symlink', linkname: '.'}, {name: 'd/e', type: 'symlink', linkname: '..'}, {name: 'e/x/y.txt', content: 'x'}], /"d\/e" under the link "d"/],
    // The attack that read /etc/passwd: `d -> .` and `d/d/d/e -> ../../..`, then ?dockerfilePath=e/etc/passwd.
    ['a deep entry through a link (d/d/d/e -> ../../..)', [{name: 'd', type: 'symlink', linkname: '.'}, {name: 'd/d/d/e', type: 'symlink', linkname: '../../..'}], /"d\/d\/d\/e" under the link "d"/],
    // Lexically `e/..` is the project, but e is a link to `.`, so on disk it is the project's parent.
    ['a link escaping through another link (e -> ., x -> e/..)', [{name: 'e', type: 'symlink', linkname: '.'}, {name: 'x', type: 'symlink', linkname: 'e/..'}], /link that escapes it: "x" → "e\/\.\."/],
    ['links in a loop', [{name: 'a', type: 'symlink', linkname: 'b'}, {name: 'b', type: 'symlink', linkname: 'a'}], /links that go round in a loop/],
  ]
  for (const [what, entries, message] of refusals) {
    it(`refuses ${what}, naming the entry, and keeps no spool`, async () => {
      await assert.rejects(upload(entries), (error: Error) => error instanceof BuildContextError && message.test(error.message))
      assert.deepEqual(spools(), [])
      assert.equal(existsSync(path.join(spoolParent, 'x', 'y.txt')), false)
      assert.equal(existsSync(path.join(tmpdir(), 'x', 'y.txt')), false)
    })
  }

  it('refuses an upload over the limits of entries, unpacked bytes and uploaded bytes', async () => {
    const big = [{name: 'a', content: Buffer.alloc(5000)}]
    await assert.rejects(upload(big, {maxBytes: 4096}), /the build context is larger than .* unpacked/)
    const many = Array.from({length: 11}, (_, index) => ({name: `f${index}`, content: 'x'}))
    await assert.rejects(upload(many, {maxEntries: 10}), /more than 10 entries/)
    const random = Buffer.from(Array.from({length: 64 * 1024}, () => Math.floor(Math.random() * 256)))
    await assert.rejects(upload([{name: 'noise', content: random}], {maxUploadBytes: 32 * 1024}), /upload is larger than .*--max-upload/)
    assert.deepEqual(spools(), [])
  })

  it('refuses what is not a gzip\'d tar in one line', async () => {
    await assert.rejects(UploadedProject.receive(Readable.from([Buffer.from('not gzip at all')]), DEFAULT_UPLOAD_LIMITS, spoolParent), (error: Error) => error instanceof BuildContextError && /not a valid gzip'd tar/.test(error.message))
  })

  it('reads a 20,000-file upload and packs it back within seconds', async function () {
    this.timeout(30_000)
    const entries: Entry[] = Array.from({length: 20_000}, (_, index) => ({name: `src/${index % 100}/file-${index}.txt`, content: `file ${index}\n`}))
    const project = await upload(entries)
    try {
      const context = await unpack(project.contextTar('.', createProjectIgnore('')))
      assert.equal(context.size, 20_000)
      assert.equal(context.get('src/7/file-1207.txt')?.content, 'file 1207\n')
    } finally {
      await project.dispose()
    }
  })
})
