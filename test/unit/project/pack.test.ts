import {strict as assert} from 'node:assert'
import {randomBytes} from 'node:crypto'
import {unlinkSync} from 'node:fs'
import {chmod, lutimes, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {createGunzip} from 'node:zlib'

import {extract} from 'tar-stream'

import {ExpectedError} from '../../../src/errors.js'
import {listProjectEntries, packProject, packProjectTar, type PackProgress} from '../../../src/project/pack.js'

interface UnpackedEntry {
  name: string
  type: string
  mode: number
  mtimeSeconds: number
  uid: number
  gid: number
  content?: Buffer
  linkname?: string
}

async function unpack(tar: Readable): Promise<UnpackedEntry[]> {
  const entries: UnpackedEntry[] = []
  const extractor = extract()
  tar.on('error', (error) => extractor.destroy(error))
  tar.pipe(extractor)
  for await (const entry of extractor) {
    const chunks: Buffer[] = []
    for await (const chunk of entry) chunks.push(chunk as Buffer)
    const {header} = entry
    entries.push({
      name: header.name,
      type: header.type,
      mode: header.mode,
      mtimeSeconds: header.mtime.getTime() / 1000,
      uid: header.uid,
      gid: header.gid,
      ...(header.type === 'file' ? {content: Buffer.concat(chunks)} : {}),
      ...(header.type === 'symlink' ? {linkname: header.linkname} : {}),
    })
  }

  return entries
}

function gunzip(stream: Readable): Readable {
  const gunzipper = createGunzip()
  stream.on('error', (error) => gunzipper.destroy(error))
  return stream.pipe(gunzipper)
}

const MTIME = new Date('2021-06-15T10:20:30Z')
const LONG_NAME = `deep/${'a-rather-long-folder-name/'.repeat(6)}and-a-file-name-to-pass-the-100-byte-ustar-limit.txt`

interface ProjectFile {
  name: string
  content: Buffer | string
  mode: number
}

describe('packProject', () => {
  let folder: string
  const large = randomBytes(3 * 1024 * 1024 + 17)
  const files: ProjectFile[] = [
    {name: 'Dockerfile', content: 'FROM busybox\nCOPY . /app\n', mode: 0o644},
    {name: 'app/run.sh', content: '#!/bin/sh\necho hi\n', mode: 0o755},
    {name: 'app/secret.conf', content: 'token=1\n', mode: 0o600},
    {name: 'app/empty.txt', content: '', mode: 0o644},
    {name: 'app/large.bin', content: large, mode: 0o644},
    {name: 'app/naïve-ünïcode.txt', content: 'utf-8 name\n', mode: 0o644},
    {name: 'app/keep.log', content: 'brought back by a negation\n', mode: 0o644},
    {name: LONG_NAME, content: 'long\n', mode: 0o644},
    {name: 'ignored/Dockerfile', content: 'FROM always-sent\n', mode: 0o644},
  ]
  const ignoredFiles: ProjectFile[] = [
    {name: 'ignored/huge.bin', content: Buffer.alloc(8 * 1024 * 1024, 7), mode: 0o644},
    {name: 'app/debug.log', content: 'noise\n', mode: 0o644},
    {name: '.git/HEAD', content: 'ref: refs/heads/main\n', mode: 0o644},
    {name: 'app/vendor/.git/config', content: '[core]\n', mode: 0o644},
  ]

  before(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'flotilla-pack-'))
    for (const file of [...files, ...ignoredFiles, {name: '.dockerignore', content: 'ignored\napp/*.log\n!app/keep.log\n.git\nDockerfile\n', mode: 0o644}]) {
      const target = path.join(folder, file.name)
      await mkdir(path.dirname(target), {recursive: true})
      await writeFile(target, file.content)
      await chmod(target, file.mode)
      await utimes(target, MTIME, MTIME)
    }

    await mkdir(path.join(folder, 'app/empty-folder'))
    await symlink('run.sh', path.join(folder, 'app/run-link'))
    await lutimes(path.join(folder, 'app/run-link'), MTIME, MTIME)
    await chmod(path.join(folder, 'app'), 0o750)
    for (const directory of ['app/empty-folder', 'app/vendor', 'app', ...new Set(files.map((file) => path.dirname(file.name)).filter((name) => name !== '.').sort().reverse())]) {
      await utimes(path.join(folder, directory), MTIME, MTIME)
    }
  })

  after(async () => {
    await rm(folder, {recursive: true, force: true})
  })

  it('holds exactly the files .dockerignore lets through, sorted, with their contents, modes and mtimes', async () => {
    const unpacked = await unpack(gunzip(packProject(folder)))
    const fileNames = [...files.map((file) => file.name), '.dockerignore']
    const folderNames = ['app', 'app/empty-folder', 'app/vendor', 'deep', ...Array.from({length: 6}, (_, depth) => `deep${'/a-rather-long-folder-name'.repeat(depth + 1)}`)]
    const expectedNames = [...fileNames, ...folderNames.map((name) => `${name}/`), 'app/run-link'].sort((left, right) =>
      left.replace(/\/$/, '') < right.replace(/\/$/, '') ? -1 : 1,
    )
    assert.deepEqual(
      unpacked.map((entry) => entry.name),
      expectedNames,
    )

    for (const file of files) {
      const entry = unpacked.find((candidate) => candidate.name === file.name)
      assert.ok(entry, file.name)
      assert.equal(entry.type, 'file')
      assert.ok(entry.content?.equals(Buffer.from(file.content)), `content of ${file.name}`)
      assert.equal(entry.mode, file.mode, `mode of ${file.name}`)
      assert.equal(entry.mtimeSeconds, MTIME.getTime() / 1000, `mtime of ${file.name}`)
      assert.equal(entry.uid, 0)
      assert.equal(entry.gid, 0)
    }

    const appFolder = unpacked.find((entry) => entry.name === 'app/')
    assert.equal(appFolder?.type, 'directory')
    assert.equal(appFolder?.mode, 0o750)
    assert.equal(appFolder?.mtimeSeconds, MTIME.getTime() / 1000)
    const link = unpacked.find((entry) => entry.name === 'app/run-link')
    assert.equal(link?.type, 'symlink')
    assert.equal(link?.linkname, 'run.sh')
  })

  it('leaves out ignored files, .git folders and the large ignored file', async () => {
    const names = (await unpack(gunzip(packProject(folder)))).map((entry) => entry.name)
    for (const file of ignoredFiles) assert.ok(!names.includes(file.name), `${file.name} was sent`)
    assert.ok(!names.includes('ignored/'))
    assert.ok(!names.some((name) => name.includes('.git/')))
  })

  it('is the same archive every time', async () => {
    const first = await readAll(packProjectTar(folder))
    const second = await readAll(packProjectTar(folder))
    assert.ok(first.equals(second))
  })

  it('reports the bytes read, up to the total of the files sent', async () => {
    const reports: PackProgress[] = []
    await readAll(packProject(folder, {onProgress: (progress) => reports.push(progress)}))
    const total = files.reduce((sum, file) => sum + Buffer.byteLength(file.content), 0) + (await readFile(path.join(folder, '.dockerignore'))).length
    assert.ok(reports.length > 2)
    assert.deepEqual(reports.at(0), {bytesRead: 0, totalBytes: total})
    assert.deepEqual(reports.at(-1), {bytesRead: total, totalBytes: total})
    for (let index = 1; index < reports.length; index++) assert.ok(reports[index].bytesRead >= reports[index - 1].bytesRead)
  })

  it('lists the same entries it packs', async () => {
    const listed = await listProjectEntries(folder)
    const packed = await unpack(packProjectTar(folder))
    assert.deepEqual(
      listed.map((entry) => (entry.type === 'directory' ? `${entry.name}/` : entry.name)),
      packed.map((entry) => entry.name),
    )
  })

  it('fails with a clear error when a file disappears while it is packed', async () => {
    const doomed = path.join(folder, 'zz-vanishing.txt')
    await writeFile(doomed, 'here at listing time\n')
    try {
      const archive = packProject(folder, {onProgress: ({bytesRead}) => bytesRead === 0 && unlinkSync(doomed)})
      await assert.rejects(readAll(archive), (error: Error) => error instanceof ExpectedError && error.message.includes('zz-vanishing.txt') && error.message.includes('changed while'))
    } finally {
      await rm(doomed, {force: true})
    }
  })
})

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

describe('packProject for a compose project', () => {
  let folder: string

  before(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'flotilla-pack-compose-'))
    const project: Record<string, string | Buffer> = {
      '.dockerignore': '**/*.tmp\n',
      'docker-compose.yml': 'services:\n  api:\n    build: api\n    image: "${IMAGE}"\n',
      'root.tmp': 'ignored by the root\n',
      'api/.dockerignore': 'node_modules\nDockerfile\n',
      'api/Dockerfile': 'FROM busybox\n',
      'api/node_modules/big.bin': Buffer.alloc(2 * 1024 * 1024, 1),
      'api/notes.tmp': 'api has its own rules: kept\n',
      'api/src/index.js': 'console.log(1)\n',
      'web/Dockerfile': 'FROM busybox\n',
      'web/notes.tmp': 'web follows the root: ignored\n',
    }
    for (const [name, content] of Object.entries(project)) {
      await mkdir(path.dirname(path.join(folder, name)), {recursive: true})
      await writeFile(path.join(folder, name), content)
    }

    await utimes(path.join(folder, 'docker-compose.yml'), MTIME, MTIME)
  })

  after(async () => {
    await rm(folder, {recursive: true, force: true})
  })

  it("applies each build context's own .dockerignore to the files under it", async () => {
    const names = (await unpack(gunzip(packProject(folder, {contexts: ['api', 'web']})))).filter((entry) => entry.type === 'file').map((entry) => entry.name)
    assert.deepEqual(names, ['.dockerignore', 'api/.dockerignore', 'api/Dockerfile', 'api/notes.tmp', 'api/src/index.js', 'docker-compose.yml', 'web/Dockerfile'])
    const rootOnly = (await unpack(gunzip(packProject(folder)))).map((entry) => entry.name)
    assert.ok(rootOnly.includes('api/node_modules/big.bin'), 'without the contexts, only the root rules apply')
  })

  it('sends a replaced file with the new contents, keeping its mode and mtime', async () => {
    const resolved = 'services:\n  api:\n    build: api\n    image: resolved\n'
    const reports: PackProgress[] = []
    const entries = await unpack(packProjectTar(folder, {contexts: ['api'], replacements: {'docker-compose.yml': resolved}, onProgress: (report) => reports.push(report)}))
    const compose = entries.find((entry) => entry.name === 'docker-compose.yml')
    assert.equal(compose?.content?.toString(), resolved)
    assert.equal(compose?.mtimeSeconds, MTIME.getTime() / 1000)
    assert.equal(reports.at(-1)?.bytesRead, reports.at(-1)?.totalBytes)
  })
})
