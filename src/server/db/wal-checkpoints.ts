import {createRequire} from 'node:module'
import {Worker} from 'node:worker_threads'

import type SqliteDatabase from 'libsql'

/** How often the worker moves what the WAL holds into the database file. */
export const CHECKPOINT_EVERY_MS = 250
/**
 * The WAL pages past which the server's own connection checkpoints after a commit, as SQLite does by itself at
 * 1,000: with the worker keeping up it never gets there, and without it (a worker gone) the WAL stays bounded.
 */
export const FALLBACK_CHECKPOINT_PAGES = 16_384
/** The WAL file is cut back to this size once emptied, so one burst of writes does not keep its size on disk. */
const WAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024

/**
 * The worker's whole program (CommonJS, run with `eval`: the server is bundled, so it has no file of its own).
 * PASSIVE never waits for, nor blocks, the server's readers and writers; the server's next write after a complete
 * checkpoint starts the WAL over.
 */
const WORKER_SOURCE = `
const {parentPort, workerData} = require('node:worker_threads')
const Database = require(workerData.driver)
const connection = new Database(workerData.file)
connection.pragma('busy_timeout = 1000')
const checkpoint = () => {
  try {
    connection.pragma('wal_checkpoint(PASSIVE)')
  } catch (error) {
    parentPort.postMessage({failed: String(error && error.message || error)})
  }
}
const timer = setInterval(checkpoint, workerData.everyMs)
parentPort.on('message', () => {
  clearInterval(timer)
  connection.close()
  parentPort.close()
})
`

/**
 * Checkpoints of a SQLite database in WAL mode, taken off the server's event loop: SQLite runs one in the
 * connection that commits, and with 20,000 devices' heartbeats a commit every second or so paid 20–25 ms for it (a
 * thousand pages copied into the database file, then its fsync), every request waiting meanwhile. A worker thread
 * with a connection of its own takes them every {@link CHECKPOINT_EVERY_MS}; the server's connection keeps a far
 * later checkpoint of its own, should the worker fall behind or stop.
 */
export class WalCheckpoints {
  private readonly worker: Worker
  private readonly exited: Promise<unknown>
  private stopped = false

  constructor(
    private readonly connection: SqliteDatabase.Database,
    file: string,
    onError: (message: string) => void,
  ) {
    connection.pragma(`wal_autocheckpoint = ${FALLBACK_CHECKPOINT_PAGES}`)
    connection.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`)
    const driver = createRequire(import.meta.url).resolve('libsql')
    this.worker = new Worker(WORKER_SOURCE, {eval: true, workerData: {driver, file, everyMs: CHECKPOINT_EVERY_MS}})
    this.exited = new Promise((resolve) => this.worker.once('exit', resolve))
    // It must never keep the server's process alive, nor take it down: a worker that fails leaves SQLite's own checkpoints.
    this.worker.unref()
    this.worker.on('message', (message: {failed?: string}) => message.failed && onError(`checkpointing the database failed: ${message.failed}`))
    this.worker.on('error', (error) => {
      onError(`the database's checkpoint worker stopped: ${error.message}; the server checkpoints by itself`)
      this.checkpointHere()
    })
  }

  /** Stops the worker (before the server's connection closes, which checkpoints what is left). */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    // Held until it has exited, or a process with nothing else to do would end before its connection is closed.
    this.worker.ref()
    this.worker.postMessage('stop')
    await this.exited
    this.checkpointHere()
  }

  private checkpointHere(): void {
    if (this.connection.open) this.connection.pragma('wal_autocheckpoint = 1000')
  }
}
