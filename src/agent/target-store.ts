import {readFile} from 'node:fs/promises'
import path from 'node:path'

import {writeFileAtomic} from '../atomic-file.js'
import type {TargetDevice} from '../protocol/target-state.js'

export interface StoredTarget {
  target: TargetDevice
  etag?: string
  /** ISO time the server gave it. */
  fetchedAt: string
}

/** The last target state fetched, kept in the data dir so the agent converges offline and after a restart. */
export class TargetStore {
  readonly file: string
  private cached?: StoredTarget

  constructor(dataDir: string) {
    this.file = path.join(dataDir, 'target-state.json')
  }

  async load(): Promise<StoredTarget | undefined> {
    if (this.cached) return this.cached
    try {
      this.cached = JSON.parse(await readFile(this.file, 'utf8')) as StoredTarget
    } catch (error) {
      // A missing or torn file means no target yet: the next poll brings one.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && !(error instanceof SyntaxError)) throw error
    }

    return this.cached
  }

  async save(stored: StoredTarget): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify(stored), 0o600)
    this.cached = stored
  }
}
