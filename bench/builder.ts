/**
 * The builder's side of a push: reading the upload (UploadedProject.receive, which indexes and spools it without
 * unpacking) and making the build context the engine gets (contextTar), beside `tar -xz` unpacking the same
 * archive into a folder, the reference for what the builder did before and what any unpacking costs.
 */
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtemp, rm} from 'node:fs/promises'
import {loadavg, tmpdir} from 'node:os'
import path from 'node:path'
import {Readable} from 'node:stream'
import {gzipSync} from 'node:zlib'

import {pack} from 'tar-stream'

import {createProjectIgnore} from '../src/project/ignore.js'
import {UploadedProject} from '../src/server/builder/upload.js'
import {median} from './measure.js'

const SMALL_FILES = 20_000
const FILES_PER_FOLDER = 100
const LARGE_FILES = 20
const LARGE_FILE_BYTES = 4 * 1024 * 1024
const ROUNDS = 5

/** A gzip'd tar like a push uploads: 20,000 small source files in 200 folders and a few large assets. */
async function makeUpload(): Promise<Buffer> {
  const archive = pack()
  archive.entry({name: 'Dockerfile', mode: 0o644}, 'FROM flotilla-test/busybox\nCOPY . /app\n')
  for (let index = 0; index < SMALL_FILES; index++) {
    archive.entry({name: `src/module-${Math.floor(index / FILES_PER_FOLDER)}/file-${index}.js`, mode: 0o644}, `export const value = ${JSON.stringify(randomBytes(64 + (index % 32) * 32).toString('base64'))}\n`)
  }

  for (let index = 0; index < LARGE_FILES; index++) archive.entry({name: `assets/blob-${index}.bin`, mode: 0o644}, randomBytes(LARGE_FILE_BYTES))
  archive.finalize()
  const chunks: Buffer[] = []
  for await (const chunk of archive) chunks.push(chunk as Buffer)
  return gzipSync(Buffer.concat(chunks), {level: 6})
}

async function timeBuilder(upload: Buffer): Promise<{receiveMs: number; contextMs: number}> {
  const start = process.hrtime.bigint()
  const project = await UploadedProject.receive(Readable.from([upload]))
  const received = process.hrtime.bigint()
  try {
    for await (const chunk of project.contextTar('.', createProjectIgnore(''))) void chunk
  } finally {
    await project.dispose()
  }

  return {receiveMs: Number(received - start) / 1e6, contextMs: Number(process.hrtime.bigint() - received) / 1e6}
}

async function timeTarUnpack(upload: Buffer): Promise<number> {
  const folder = await mkdtemp(path.join(tmpdir(), 'flotilla-bench-unpack-'))
  try {
    const start = process.hrtime.bigint()
    const child = spawn('tar', ['-xz', '-f', '-', '-C', folder], {stdio: ['pipe', 'ignore', 'inherit']})
    const exited = new Promise<number | null>((resolve, reject) => {
      child.on('error', reject)
      child.on('close', resolve)
    })
    child.stdin.end(upload)
    if ((await exited) !== 0) throw new Error('tar -xz failed')
    return Number(process.hrtime.bigint() - start) / 1e6
  } finally {
    await rm(folder, {recursive: true, force: true})
  }
}

export async function run(): Promise<void> {
  const upload = await makeUpload()
  const samples = {receive: [] as number[], context: [] as number[], total: [] as number[], tar: [] as number[], ratio: [] as number[]}
  await timeBuilder(upload)
  for (let round = 0; round < ROUNDS; round++) {
    const ours = await timeBuilder(upload)
    const tar = await timeTarUnpack(upload)
    samples.receive.push(ours.receiveMs)
    samples.context.push(ours.contextMs)
    samples.total.push(ours.receiveMs + ours.contextMs)
    samples.tar.push(tar)
    samples.ratio.push((ours.receiveMs + ours.contextMs) / tar)
  }

  const ms = (values: number[]) => `${median(values).toFixed(0)} ms`
  process.stdout.write(`builder upload of ${SMALL_FILES} small files + ${LARGE_FILES} × 4 MiB (${(upload.length / 1e6).toFixed(1)} MB gzip'd), median of ${ROUNDS} interleaved rounds, load ${loadavg().map((load) => load.toFixed(2)).join(' ')}\n`)
  process.stdout.write(`  receive (index + spool) ${ms(samples.receive)}, build context tar ${ms(samples.context)}, together ${ms(samples.total)}\n`)
  process.stdout.write(`  reference: tar -xz into a folder ${ms(samples.tar)}\n`)
  process.stdout.write(`  ratio flotilla / tar -xz: ${median(samples.ratio).toFixed(2)}×\n`)
}
