/**
 * Push packing: packProject of a synthetic project beside `tar -cz` of the same tree with the same excludes, measured in the
 * same run; then pushes end to end (first, unchanged, one file changed), and an emulated build beside the native one of
 * the same project.
 */
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {cpus, loadavg, tmpdir} from 'node:os'
import path from 'node:path'
import type {Readable} from 'node:stream'

import Docker from 'dockerode'

import {packProject} from '../src/project/pack.js'
import {makeCliHome, runCli} from '../test/helpers/cli.js'
import {ensureBaseImage, ensureDocker, ensurePlatformBaseImage, startRegistry} from '../test/helpers/docker.js'
import {startServer} from '../test/helpers/server.js'
import {median} from './measure.js'

const SMALL_FILES = 20_000
const SMALL_FILES_PER_FOLDER = 100
const LARGE_FILES = 50
const LARGE_FILE_BYTES = 4 * 1024 * 1024
const IGNORED_FOLDER = 'build-output'
const ROUNDS = 5

/** Half random, half repeated text: compresses a little, like real binaries and assets do. */
function incompressibleIsh(bytes: number): Buffer {
  const random = randomBytes(bytes / 2)
  const text = Buffer.from('flotilla push benchmark '.repeat(Math.ceil(bytes / 2 / 24)).slice(0, bytes / 2))
  return Buffer.concat([random, text])
}

async function makeProject(root: string): Promise<{bytes: number; files: number}> {
  let bytes = 0
  const write = async (relative: string, content: Buffer | string) => {
    await mkdir(path.dirname(path.join(root, relative)), {recursive: true})
    await writeFile(path.join(root, relative), content)
    bytes += Buffer.byteLength(content)
  }

  await write('Dockerfile', 'FROM flotilla-test/busybox\nCOPY . /app\n')
  await write('.dockerignore', `${IGNORED_FOLDER}\n`)
  for (let folder = 0; folder < SMALL_FILES / SMALL_FILES_PER_FOLDER; folder++) {
    await Promise.all(
      Array.from({length: SMALL_FILES_PER_FOLDER}, (_, index) =>
        write(`src/module-${folder}/file-${index}.js`, `export const value${index} = ${JSON.stringify(randomBytes(64 + (index % 32) * 32).toString('base64'))}\n`),
      ),
    )
  }

  for (let index = 0; index < LARGE_FILES; index++) await write(`assets/blob-${index}.bin`, incompressibleIsh(LARGE_FILE_BYTES))
  for (let index = 0; index < 10; index++) await write(`${IGNORED_FOLDER}/artifact-${index}.bin`, randomBytes(LARGE_FILE_BYTES))
  await write('.git/objects/pack/big.pack', randomBytes(LARGE_FILE_BYTES))
  return {bytes, files: SMALL_FILES + LARGE_FILES + 2}
}

async function countBytes(stream: Readable): Promise<number> {
  let total = 0
  for await (const chunk of stream) total += (chunk as Buffer).length
  return total
}

async function timePacker(root: string): Promise<{ms: number; bytes: number}> {
  const start = process.hrtime.bigint()
  const bytes = await countBytes(packProject(root))
  return {ms: Number(process.hrtime.bigint() - start) / 1e6, bytes}
}

async function timeTar(root: string): Promise<{ms: number; bytes: number}> {
  const start = process.hrtime.bigint()
  const child = spawn('tar', ['-cz', '-f', '-', `--exclude=./${IGNORED_FOLDER}`, '--exclude=./.git', '-C', root, '.'], {stdio: ['ignore', 'pipe', 'inherit']})
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', resolve)
  })
  const bytes = await countBytes(child.stdout)
  const code = await exited
  if (code !== 0) throw new Error(`tar -cz exited with ${code}`)
  return {ms: Number(process.hrtime.bigint() - start) / 1e6, bytes}
}

/** Seconds a push of the project takes through the CLI, end to end. */
async function timePush(root: string, env: Record<string, string>, what: string): Promise<number> {
  const started = process.hrtime.bigint()
  const push = await runCli(['push', 'bench', '--source', root], {env, timeoutMs: 600_000})
  if (push.exitCode !== 0) throw new Error(`${what} push failed: ${push.stderr.slice(-2000)}`)
  return Number(process.hrtime.bigint() - started) / 1e9
}

function formatLoad(): string {
  return `load average ${loadavg()
    .map((load) => load.toFixed(2))
    .join(' ')} on ${cpus().length} CPUs`
}

/**
 * The same project pushed through the real server, engine and registry: first, then again with nothing changed (only
 * the manifest travels and the image is reused; goal: under a tenth of the first), then with one file changed.
 */
async function timeEndToEndPushes(root: string, files: number): Promise<void> {
  await ensureDocker()
  await ensureBaseImage()
  const registry = await startRegistry()
  const server = await startServer({args: ['--registry', registry.address]})
  try {
    const env = {HOME: makeCliHome(), FLOTILLA_URL: server.url}
    const login = await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env, input: server.admin.password})
    if (login.exitCode !== 0) throw new Error(`login failed: ${login.stderr}`)
    await runCli(['fleet', 'create', 'bench', '--type', 'intel-nuc'], {env})
    const first = await timePush(root, env, 'first')
    const firstLoad = formatLoad()
    const unchanged = await timePush(root, env, 'unchanged')
    const unchangedLoad = formatLoad()
    await writeFile(path.join(root, 'src/module-0/file-0.js'), `export const changed = ${Date.now()}\n`)
    const oneFile = await timePush(root, env, 'one-file change')
    const ratio = unchanged / first
    process.stdout.write(`push end to end of ${files} files (server, engine, registry on loopback):\n`)
    process.stdout.write(`  first push                ${first.toFixed(1).padStart(6)} s   (${firstLoad})\n`)
    process.stdout.write(`  again, nothing changed    ${unchanged.toFixed(1).padStart(6)} s   (${unchangedLoad})\n`)
    process.stdout.write(`  again, one file changed   ${oneFile.toFixed(1).padStart(6)} s   (${formatLoad()})\n`)
    process.stdout.write(`  unchanged / first: ${ratio.toFixed(3)} (goal < 0.10: ${ratio < 0.1 ? 'ok' : 'OVER GOAL'})\n`)
  } finally {
    await server.stop()
    await registry.stop()
  }
}

const EMULATED_ROUNDS = 2

/** A tiny project whose RUN steps do some CPU work in busybox, from the base of the fleet's architecture. */
async function makeCpuBoundProject(root: string): Promise<void> {
  await writeFile(
    path.join(root, 'Dockerfile.template'),
    'FROM flotilla-bench/busybox-%%BALENA_ARCH%%\nRUN i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo counted $i\nRUN for n in 1 2 3 4 5; do sha256sum /bin/busybox; done > /sums\n',
  )
}

/**
 * The same project built for a fleet of the server's own CPU and for one of another (arm64 on x86, amd64 on
 * arm64), whose RUN steps run under qemu-user-static: the median of a few uncached pushes each, and the ratio.
 */
async function timeEmulatedBuilds(): Promise<void> {
  const native = process.arch === 'arm64' ? {type: 'generic-aarch64', arch: 'aarch64', platform: 'linux/arm64'} : {type: 'generic-amd64', arch: 'amd64', platform: 'linux/amd64'}
  const foreign = process.arch === 'arm64' ? {type: 'generic-amd64', arch: 'amd64', platform: 'linux/amd64'} : {type: 'raspberrypi4-64', arch: 'aarch64', platform: 'linux/arm64'}
  const docker = new Docker()
  for (const fleet of [native, foreign]) {
    const base = await ensurePlatformBaseImage(fleet.platform)
    await docker.getImage(base).tag({repo: `flotilla-bench/busybox-${fleet.arch}`, tag: 'latest'})
  }

  const root = await mkdtemp(path.join(tmpdir(), 'flotilla-bench-emulated-'))
  const server = await startServer()
  try {
    await makeCpuBoundProject(root)
    const env = {HOME: makeCliHome(), FLOTILLA_URL: server.url}
    const login = await runCli(['login', '--credentials', '--email', server.admin.email, '--password', '-'], {env, input: server.admin.password})
    if (login.exitCode !== 0) throw new Error(`login failed: ${login.stderr}`)
    const seconds: Record<'native' | 'emulated', number[]> = {native: [], emulated: []}
    for (const [kind, fleet] of [['native', native], ['emulated', foreign]] as const) {
      await runCli(['fleet', 'create', kind, '--type', fleet.type], {env})
      for (let round = 0; round < EMULATED_ROUNDS; round++) {
        const started = process.hrtime.bigint()
        const push = await runCli(['push', kind, '--source', root, '--nocache'], {env, timeoutMs: 600_000})
        if (push.exitCode !== 0) throw new Error(`${kind} push failed: ${push.stderr.slice(-2000)}`)
        seconds[kind].push(Number(process.hrtime.bigint() - started) / 1e9)
      }
    }

    const nativeSeconds = median(seconds.native)
    const emulatedSeconds = median(seconds.emulated)
    process.stdout.write(
      `build of one project, uncached, median of ${EMULATED_ROUNDS}: native ${native.platform} ${nativeSeconds.toFixed(1)} s, emulated ${foreign.platform} ${emulatedSeconds.toFixed(1)} s (${(emulatedSeconds / nativeSeconds).toFixed(1)}× the native)\n`,
    )
  } finally {
    await server.stop()
    await rm(root, {recursive: true, force: true})
  }
}

export async function run(): Promise<void> {
  const root = await mkdtemp(path.join(tmpdir(), 'flotilla-bench-push-'))
  try {
    const project = await makeProject(root)
    const packedMegabytes = (project.bytes - 11 * LARGE_FILE_BYTES) / 1e6
    const samples: Record<'flotilla' | 'tar -cz', number[]> = {flotilla: [], 'tar -cz': []}
    const output: Record<string, number> = {}
    for (let round = 0; round < ROUNDS; round++) {
      const ours = await timePacker(root)
      const reference = await timeTar(root)
      samples.flotilla.push(ours.ms)
      samples['tar -cz'].push(reference.ms)
      output.flotilla = ours.bytes
      output['tar -cz'] = reference.bytes
    }

    const times = {flotilla: median(samples.flotilla), 'tar -cz': median(samples['tar -cz'])}
    process.stdout.write(
      `push packing: ${project.files} files, ${packedMegabytes.toFixed(0)} MB sent (plus ${(11 * LARGE_FILE_BYTES / 1e6).toFixed(0)} MB ignored), median of ${ROUNDS} runs\n`,
    )
    for (const name of ['tar -cz', 'flotilla'] as const) {
      const speed = packedMegabytes / (times[name] / 1000)
      process.stdout.write(`  ${name.padEnd(9)} ${times[name].toFixed(0).padStart(6)} ms  ${speed.toFixed(1).padStart(6)} MB/s  → ${(output[name] / 1e6).toFixed(1)} MB gzip'd\n`)
    }

    const ratio = times['tar -cz'] / times.flotilla
    process.stdout.write(`  flotilla speed / tar -cz speed: ${ratio.toFixed(2)}× (target ≥ 1: ${ratio >= 1 ? 'ok' : 'UNDER TARGET'})\n`)
    await timeEndToEndPushes(root, project.files)
    await timeEmulatedBuilds()
  } finally {
    await rm(root, {recursive: true, force: true})
  }
}
