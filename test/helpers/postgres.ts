import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import type {Socket} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

import pg from 'pg'

import {type Db, openDatabase} from '../../src/server/db/database.js'
import type {DialectName} from '../../src/server/db/dialect.js'
import {freeLoopbackPort} from './net.js'

/**
 * One PostgreSQL cluster for the whole test run, started on first use: `initdb` in a temporary folder, a free
 * loopback port, its socket in that folder, run as the `postgres` user (PostgreSQL refuses root), stopped and
 * removed when the test process exits, which it does not delay. Each server gets a database of its own, so tests
 * stay independent.
 */
export interface TestPostgres {
  /** `postgres://flotilla:<password>@127.0.0.1:<port>` without a database. */
  baseUrl: string
  port: number
  user: string
  password: string
  /** A new database, its schema up to date (copied from a migrated template), or empty when asked; its URL. */
  createDatabase(options?: {empty?: boolean}): Promise<string>
  dropDatabase(url: string): Promise<void>
}

/** Which database `startServer` and the db unit tests use: FLOTILLA_TEST_DATABASE=postgres, else SQLite. */
export const TEST_DATABASE: 'sqlite' | 'postgres' = process.env.FLOTILLA_TEST_DATABASE === 'postgres' ? 'postgres' : 'sqlite'

const START_DEADLINE_MS = 30_000
const USER = 'flotilla'

/** Debian keeps the server's programs out of PATH, under /usr/lib/postgresql/<version>/bin; the newest wins. */
function postgresBinDir(): string {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((name) => existsSync(path.join(root, name, 'bin', 'postgres'))) : []
  if (versions.length === 0) throw new Error('PostgreSQL is not installed: the tests need Debian\'s postgresql package (apt-get install postgresql)')
  return path.join(root, versions.sort((a, b) => Number(b) - Number(a))[0], 'bin')
}

function postgresUser(): {uid: number; gid: number} {
  const [uid, gid] = ['-u', '-g'].map((flag) => Number(execFileSync('id', [flag, 'postgres'], {encoding: 'utf8'}).trim()))
  return {uid, gid}
}

function waitForReady(child: ChildProcess, log: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`PostgreSQL did not start within ${START_DEADLINE_MS} ms:\n${log()}`)), START_DEADLINE_MS)
    const onData = () => {
      if (/database system is ready to accept connections/.test(log())) {
        clearTimeout(timer)
        child.stderr?.off('data', onData)
        resolve()
      }
    }

    child.stderr?.on('data', onData)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`PostgreSQL exited (${code ?? signal}) before it was ready:\n${log()}`))
    })
  })
}

async function startCluster(): Promise<TestPostgres> {
  const bin = postgresBinDir()
  const owner = postgresUser()
  const root = mkdtempSync(path.join(tmpdir(), 'flotilla-postgres-'))
  const dataDir = path.join(root, 'data')
  const socketDir = path.join(root, 'socket')
  mkdirSync(socketDir)
  const password = randomBytes(12).toString('hex')
  const passwordFile = path.join(root, 'password')
  writeFileSync(passwordFile, password)
  for (const file of [root, socketDir, passwordFile]) chownSync(file, owner.uid, owner.gid)
  const asPostgres = {...owner, env: {PATH: process.env.PATH, LANG: 'C.UTF-8'}}
  // The cluster lives for one test run: no fsync, and nothing but password logins over TCP.
  execFileSync(path.join(bin, 'initdb'), ['-D', dataDir, '-U', USER, `--pwfile=${passwordFile}`, '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'], {...asPostgres, stdio: 'pipe'})
  const port = await freeLoopbackPort()
  const settings = {listen_addresses: '127.0.0.1', port, unix_socket_directories: socketDir, fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: 300}
  const child = spawn(path.join(bin, 'postgres'), ['-D', dataDir, ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`])], {...asPostgres, stdio: ['ignore', 'ignore', 'pipe']})
  let log = ''
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (log = (log + chunk).slice(-8192)))
  const stop = () => {
    // SIGQUIT: immediate shutdown; the folder goes with it.
    child.kill('SIGQUIT')
    rmSync(root, {recursive: true, force: true})
  }

  process.once('exit', stop)
  try {
    await waitForReady(child, () => log)
  } catch (error) {
    stop()
    throw error
  }

  // The cluster serves the process while it runs, but is no reason to keep it running: a bench or script that is
  // done exits, and its exit stops the cluster (a ref'd child would keep it waiting for a cluster that waits for it).
  child.unref()
  ;(child.stderr as Socket | null)?.unref()
  const baseUrl = `postgres://${USER}:${password}@127.0.0.1:${port}`
  const admin = new pg.Pool({connectionString: `${baseUrl}/postgres`, max: 2, allowExitOnIdle: true})
  admin.on('error', () => {})
  let databases = 0
  // Databases sort text the way most clusters do (English, case-insensitive first), which SQLite never does, so
  // any query relying on the cluster's collation differs between the dialects and fails a test.
  const create = (name: string, template = 'template0') => admin.query(`create database ${name} template ${template} encoding 'UTF8' locale_provider icu icu_locale 'en-US' locale 'C.UTF-8'`)
  let template: Promise<string> | undefined
  // Migrating takes a second or more; copying a migrated database a tenth of that.
  const migratedTemplate = () =>
    (template ??= (async () => {
      await create('flotilla_template')
      const db = await openDatabase({url: `${baseUrl}/flotilla_template`})
      await db.destroy()
      return 'flotilla_template'
    })())
  return {
    baseUrl,
    port,
    user: USER,
    password,
    async createDatabase(options = {}) {
      const name = `flotilla_${process.pid}_${++databases}`
      await create(name, options.empty ? 'template0' : await migratedTemplate())
      return `${baseUrl}/${name}`
    },
    async dropDatabase(url) {
      const name = new URL(url).pathname.slice(1)
      await admin.query(`drop database if exists ${pg.escapeIdentifier(name)} with (force)`)
    },
  }
}

let cluster: Promise<TestPostgres> | undefined

/** The test run's PostgreSQL cluster, started on the first call. */
export function testPostgres(): Promise<TestPostgres> {
  cluster ??= startCluster()
  return cluster
}

/** The dialects the database layer's unit tests run on: every one the server supports. */
export const DIALECTS: readonly DialectName[] = ['sqlite', 'postgres']

const testDatabaseUrls = new WeakMap<Db, string>()

/** A fresh database of `dialect`, its schema up to date: SQLite in memory, or a new PostgreSQL database. Close it with closeTestDatabase. */
export async function openTestDatabase(dialect: DialectName, options: Parameters<typeof openDatabase>[1] = {}): Promise<Db> {
  if (dialect === 'sqlite') return openDatabase(':memory:', options)
  const url = await (await testPostgres()).createDatabase()
  const db = await openDatabase({url}, options)
  testDatabaseUrls.set(db, url)
  return db
}

export async function closeTestDatabase(db: Db): Promise<void> {
  await db.destroy()
  const url = testDatabaseUrls.get(db)
  if (url) await (await testPostgres()).dropDatabase(url)
}
