import {randomBytes} from 'node:crypto'
import {createWriteStream, renameSync, writeFileSync} from 'node:fs'
import {mkdir, readdir, readFile, rename, rm, stat, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {pipeline} from 'node:stream/promises'

import {EventLoopPacer} from '../../project/pack.js'
import {CONTENT_HASH_PATTERN} from '../../protocol/build-upload.js'
import type {KnownContents, UploadedProject} from './upload.js'

/** How many of a fleet's latest uploads keep their contents: enough for a retry and a push racing another. */
export const KEPT_UPLOADS = 3
/** Contents up to this size are copied into the store in one synchronous write; larger ones stream. */
const SMALL_CONTENTS_BYTES = 256 * 1024

/** One fleet's stored contents: their sizes by hash, read from the folder once, then kept up to date. */
class FleetContents implements KnownContents {
  constructor(
    readonly folder: string,
    readonly sizes: Map<string, number>,
  ) {}

  sizeOf(hash: string): number | undefined {
    return this.sizes.get(hash)
  }

  pathOf(hash: string): string {
    return path.join(this.folder, 'blobs', hash.slice(0, 2), hash)
  }
}

/** The files of one of a fleet's shard folders, or none when it does not exist yet. */
async function listFolder(folder: string): Promise<string[]> {
  try {
    return await readdir(folder)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
}

/**
 * The file contents of each fleet's latest uploads, by the SHA-256 the builder computed when they arrived, under
 * `<data dir>/build-contents/<fleet id>/blobs/<2 hex>/<hash>`: what a re-push may refer to instead of sending it
 * again. Each upload's list of hashes is recorded when it is received; when a build ends, the contents that only
 * uploads older than the fleet's KEPT_UPLOADS latest used are removed (never while another upload of the fleet is
 * open), so a fleet's store holds at most KEPT_UPLOADS uploads' worth. Contents are written under a temporary name and renamed, so a stored file is
 * always whole and always hashes to its name.
 */
export class BuildContentStore {
  private readonly fleets = new Map<number, Promise<FleetContents>>()
  /** How many uploads of each fleet are open in this process: their contents stay. */
  private readonly active = new Map<number, number>()
  /** Deleted fleets whose contents go when their last open upload ends (fleet ids are never reused). */
  private readonly deleted = new Set<number>()

  constructor(
    private readonly root: string,
    private readonly keptUploads = KEPT_UPLOADS,
  ) {}

  /** A fleet's stored contents (read from disk on first use). */
  contents(fleetId: number): Promise<FleetContents> {
    let contents = this.fleets.get(fleetId)
    if (!contents) {
      contents = this.load(fleetId)
      contents.catch(() => this.fleets.delete(fleetId))
      this.fleets.set(fleetId, contents)
    }

    return contents
  }

  private folderOf(fleetId: number): string {
    return path.join(this.root, String(fleetId))
  }

  private async load(fleetId: number): Promise<FleetContents> {
    const folder = this.folderOf(fleetId)
    const sizes = new Map<string, number>()
    for (const shard of await listFolder(path.join(folder, 'blobs'))) {
      for (const name of await listFolder(path.join(folder, 'blobs', shard))) {
        // What a server stopped mid-write left behind is never a whole file: it goes.
        if (name.endsWith('.tmp')) await rm(path.join(folder, 'blobs', shard, name), {force: true})
        if (!CONTENT_HASH_PATTERN.test(name)) continue
        sizes.set(name, (await stat(path.join(folder, 'blobs', shard, name))).size)
      }
    }

    return new FleetContents(folder, sizes)
  }

  /** Which of these hashes the fleet's store lacks (the contents query). */
  async missing(fleetId: number, hashes: string[]): Promise<string[]> {
    const contents = await this.contents(fleetId)
    return [...new Set(hashes)].filter((hash) => !contents.sizes.has(hash))
  }

  /**
   * Starts an upload of the fleet: `known` is what it may refer to; once it is received, `record` notes the contents
   * it uses and `store` keeps the new ones (it may run beside the build); `end`, when its build is over, prunes the
   * fleet's store. Nothing is pruned while an upload of the fleet is open in this process.
   */
  async openUpload(fleetId: number): Promise<StoreUpload> {
    const contents = await this.contents(fleetId)
    this.active.set(fleetId, (this.active.get(fleetId) ?? 0) + 1)
    let ended = false
    return {
      known: contents,
      record: async (project) => {
        const record = `${Date.now().toString().padStart(15, '0')}-${randomBytes(4).toString('hex')}.json`
        await mkdir(path.join(contents.folder, 'uploads'), {recursive: true})
        await writeFile(path.join(contents.folder, 'uploads', record), JSON.stringify([...project.contentHashes()]))
      },
      store: (project, skip) => this.storeContents(contents, project, skip),
      end: async () => {
        if (ended) return
        ended = true
        const active = (this.active.get(fleetId) ?? 1) - 1
        this.active.set(fleetId, active)
        if (active > 0) return
        if (this.deleted.has(fleetId)) await rm(contents.folder, {recursive: true, force: true})
        else await this.prune(fleetId, contents)
      },
    }
  }

  /** The fleets the store holds contents of. */
  async storedFleetIds(): Promise<number[]> {
    return (await listFolder(this.root)).filter((name) => /^\d+$/.test(name)).map(Number)
  }

  /** Removes the contents of a deleted fleet: at once, or when the last of its uploads still open ends. */
  async removeFleet(fleetId: number): Promise<void> {
    this.deleted.add(fleetId)
    this.fleets.delete(fleetId)
    if ((this.active.get(fleetId) ?? 0) === 0) await rm(this.folderOf(fleetId), {recursive: true, force: true})
  }

  private async storeContents(contents: FleetContents, project: UploadedProject, skip: (name: string) => boolean): Promise<void> {
    const pacer = new EventLoopPacer()
    const created = new Set<string>()
    for (const received of project.receivedContents(skip)) {
      if (contents.sizes.has(received.hash)) continue
      const destination = contents.pathOf(received.hash)
      const shard = path.dirname(destination)
      if (!created.has(shard)) {
        await mkdir(shard, {recursive: true})
        created.add(shard)
      }

      const temporary = path.join(shard, `.${received.hash}.${randomBytes(4).toString('hex')}.tmp`)
      if (received.size <= SMALL_CONTENTS_BYTES) {
        writeFileSync(temporary, received.read(), {mode: 0o600})
        renameSync(temporary, destination)
        await pacer.tick()
      } else {
        await pipeline(received.stream(), createWriteStream(temporary, {mode: 0o600}))
        await rename(temporary, destination)
      }

      contents.sizes.set(received.hash, received.size)
    }
  }

  /** Keeps the contents of the fleet's latest uploads: removes the older uploads' records and the contents only they used. */
  private async prune(fleetId: number, contents: FleetContents): Promise<void> {
    const uploadsFolder = path.join(contents.folder, 'uploads')
    const records = (await listFolder(uploadsFolder)).sort()
    if (records.length <= this.keptUploads) return
    const hashesOf = async (record: string) => JSON.parse(await readFile(path.join(uploadsFolder, record), 'utf8')) as string[]
    const used = new Set<string>()
    for (const record of records.slice(-this.keptUploads)) for (const hash of await hashesOf(record)) used.add(hash)
    const unused = new Set<string>()
    for (const record of records.slice(0, -this.keptUploads)) for (const hash of await hashesOf(record)) if (!used.has(hash)) unused.add(hash)
    // Decided at once, with no await between the check and the forgetting: an upload opened after this sees none
    // of the contents about to go; one opened before it stops the pruning.
    if ((this.active.get(fleetId) ?? 0) > 0) return
    for (const hash of unused) contents.sizes.delete(hash)
    for (const record of records.slice(0, -this.keptUploads)) await rm(path.join(uploadsFolder, record), {force: true})
    for (const hash of unused) await rm(contents.pathOf(hash), {force: true})
  }
}

/** One upload's use of a fleet's store (BuildContentStore.openUpload). */
export interface StoreUpload {
  known: KnownContents
  record(project: UploadedProject): Promise<void>
  store(project: UploadedProject, skip: (name: string) => boolean): Promise<void>
  end(): Promise<void>
}
