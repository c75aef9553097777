import {type ChildProcess, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {CLI_BIN, PROJECT_ROOT, runCli} from './cli.js'
import {TEST_DATABASE, testPostgres} from './postgres.js'

export interface TestServer {
  url: string
  port: number
  /** The SSH port: devices' links and the users' gateway. */
  sshPort: number
  dataDir: string
  /** Its PostgreSQL database when the tests run on PostgreSQL (FLOTILLA_TEST_DATABASE=postgres); else it is SQLite in dataDir. */
  databaseUrl?: string
  /** The environment of a CLI command that opens the server's database (`server user …`) with `--data-dir dataDir`. */
  databaseEnv: NodeJS.ProcessEnv
  /** The server process's id, to look at it from outside (its memory in /proc/<pid>/status). */
  pid: number
  admin: {email: string; username: string; password: string}
  addUser(user: {email: string; username: string; password: string; organization?: string}): Promise<void>
  /** Stops the server as `kill` would (SIGTERM: requests under way are answered), and removes its data dir unless told to keep it. */
  stop(options?: {keepDataDir?: boolean}): Promise<void>
  /** Kills the server at once (SIGKILL), as a crash or power loss would, keeping its data dir. */
  crash(): Promise<void>
}

const START_DEADLINE_MS = 30_000
const STOP_DEADLINE_MS = 10_000
const LISTENING = /^flotilla server listening on (https?:\/\/[^\s,]+), SSH on port (\d+)$/m

/** The PostgreSQL database of each data dir in use, so that a server started again on a data dir finds its data. */
const databaseOfDataDir = new Map<string, string>()

/** The database a server on `dataDir` uses: its own PostgreSQL one when the tests run on PostgreSQL, else none (SQLite in dataDir). */
async function testDatabaseUrl(dataDir: string): Promise<string | undefined> {
  if (TEST_DATABASE !== 'postgres') return undefined
  let url = databaseOfDataDir.get(dataDir)
  if (!url) {
    url = await (await testPostgres()).createDatabase()
    databaseOfDataDir.set(dataDir, url)
  }

  return url
}

async function dropTestDatabase(dataDir: string): Promise<void> {
  const url = databaseOfDataDir.get(dataDir)
  if (!url) return
  databaseOfDataDir.delete(dataDir)
  await (await testPostgres()).dropDatabase(url)
}

/** Whether the process exited within the deadline (at once when it has already). */
export function waitForExit(child: ChildProcess, deadlineMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), deadlineMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

/**
 * Starts the real `flotilla server start` on an ephemeral loopback port with a fresh data dir and a known admin,
 * and resolves once it prints its listening line (or rejects with its output when it dies or takes too long).
 * `args` are extra flags of `server start` (`['--registry', '127.0.0.1:5000']`). Without `--registry` the server
 * runs with `--no-registry` (images stay in the engine), unless `managedRegistry` asks for its own token-auth registry.
 * `nodeArgs` go to node before the CLI (`--cpu-prof`).
 * `ports` starts it again where a stopped one listened (with its `dataDir`), as a restarted server would.
 * With FLOTILLA_TEST_DATABASE=postgres each data dir gets a PostgreSQL database of its own (FLOTILLA_DATABASE_URL),
 * unless `databaseUrl` names one another server uses (another instance of it): that one is dropped with its own server.
 */
export async function startServer(options: {env?: NodeJS.ProcessEnv; dataDir?: string; args?: string[]; managedRegistry?: boolean; ports?: {http: number; ssh: number}; databaseUrl?: string; nodeArgs?: string[]} = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? mkdtempSync(path.join(tmpdir(), 'flotilla-server-'))
  const databaseUrl = options.databaseUrl ?? (await testDatabaseUrl(dataDir))
  const databaseEnv: NodeJS.ProcessEnv = databaseUrl ? {FLOTILLA_DATABASE_URL: databaseUrl} : {}
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    ...databaseEnv,
    NO_COLOR: '1',
    FLOTILLA_ADMIN_EMAIL: 'admin@flotilla.test',
    FLOTILLA_ADMIN_USERNAME: 'admin',
    FLOTILLA_ADMIN_PASSWORD: `pw-${randomBytes(12).toString('hex')}`,
    ...options.env,
  }
  const admin = {email: env.FLOTILLA_ADMIN_EMAIL as string, username: env.FLOTILLA_ADMIN_USERNAME as string, password: env.FLOTILLA_ADMIN_PASSWORD as string}
  const args = options.args ?? []
  const registryArgs = options.managedRegistry || args.includes('--registry') ? [] : ['--no-registry']
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), CLI_BIN, 'server', 'start', '--port', String(options.ports?.http ?? 0), '--host', '127.0.0.1', '--data-dir', dataDir, '--ssh-port', String(options.ports?.ssh ?? 0), ...registryArgs, ...args], {
    cwd: PROJECT_ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))

  let url: string
  let sshPort: number
  try {
    ;[url, sshPort] = await new Promise<[string, number]>((resolve, reject) => {
      const fail = (reason: string) => reject(new Error(`flotilla server start ${reason}\nstdout: ${stdout}\nstderr: ${stderr}`))
      const timer = setTimeout(() => fail(`did not listen within ${START_DEADLINE_MS} ms`), START_DEADLINE_MS)
      child.stdout.on('data', (chunk: string) => {
        stdout += chunk
        const match = LISTENING.exec(stdout)
        if (match) {
          clearTimeout(timer)
          resolve([match[1], Number(match[2])])
        }
      })
      child.once('error', (error) => {
        clearTimeout(timer)
        fail(`could not be spawned: ${error.message}`)
      })
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        fail(`exited (${code ?? signal}) before listening`)
      })
    })
  } catch (error) {
    child.kill('SIGKILL')
    rmSync(dataDir, {recursive: true, force: true})
    await dropTestDatabase(dataDir)
    throw error
  }

  return {
    url,
    port: Number(new URL(url).port),
    sshPort,
    dataDir,
    databaseUrl,
    databaseEnv,
    pid: child.pid!,
    admin,
    async addUser(user) {
      const args = ['server', 'user', 'add', '--email', user.email, '--username', user.username, '--password-stdin', '--data-dir', dataDir]
      if (user.organization) args.push('--organization', user.organization)
      const result = await runCli(args, {input: user.password, env: databaseEnv})
      if (result.exitCode !== 0) throw new Error(`flotilla server user add ${user.username} failed (${result.exitCode}): ${result.stderr}`)
    },
    async stop(stopOptions = {}) {
      child.kill('SIGTERM')
      if (!(await waitForExit(child, STOP_DEADLINE_MS))) {
        child.kill('SIGKILL')
        await waitForExit(child, STOP_DEADLINE_MS)
      }

      if (!stopOptions.keepDataDir) {
        rmSync(dataDir, {recursive: true, force: true})
        await dropTestDatabase(dataDir)
      }
    },
    async crash() {
      child.kill('SIGKILL')
      await waitForExit(child, STOP_DEADLINE_MS)
    },
  }
}
