import type {TargetState} from '../protocol/target-state.js'
import type {Db} from './db/database.js'
import {computeTargetState, computeTargetStates, entityTagOf, SharedTargetParts} from './device-target.js'

/** A device's target state as served: the JSON body and its strong ETag. */
export interface ServedTarget {
  body: string
  etag: string
}

/**
 * Devices whose targets are computed together on a miss (ids in one block): after a change every device asks
 * again within its poll interval, and one read of a block's rows costs little more than one device's.
 */
const BLOCK_SIZE = 256
/** Past this many targets kept, the cache starts over rather than grow without bound. */
const MAX_TARGETS = 200_000

/**
 * Devices' target states, computed once and kept until something they are made of may have changed
 * ({@link invalidate}, which the server calls wherever it signals `targetsMaybeChanged`), so that a poll answered
 * `304` computes nothing. What devices of a fleet share is computed once for all of them.
 */
export class TargetStates {
  private generation = 0
  private shared: SharedTargetParts
  private readonly targets = new Map<number, ServedTarget>()
  private readonly blocks = new Map<number, Promise<void>>()

  constructor(private readonly db: Db) {
    this.shared = new SharedTargetParts(db)
  }

  /** Something a target is made of may have changed: every target is computed afresh when next asked for. */
  invalidate(): void {
    this.generation++
    this.targets.clear()
    this.blocks.clear()
    this.shared = new SharedTargetParts(this.db)
  }

  /** The device's target as served, or undefined when there is no such device. */
  async of(deviceId: number): Promise<ServedTarget | undefined> {
    const cached = this.targets.get(deviceId)
    if (cached) return cached
    const generation = this.generation
    await this.loadBlockOf(deviceId)
    if (generation !== this.generation) return this.of(deviceId)
    // A device registered after its block was read: it is computed alone.
    return this.targets.get(deviceId) ?? this.computeOne(deviceId, generation)
  }

  private loadBlockOf(deviceId: number): Promise<void> {
    const block = Math.floor(deviceId / BLOCK_SIZE)
    let loading = this.blocks.get(block)
    if (!loading) {
      const generation = this.generation
      loading = computeTargetStates(this.db, {from: block * BLOCK_SIZE, to: (block + 1) * BLOCK_SIZE}, this.shared).then((states) => {
        if (generation !== this.generation) return
        for (const [id, state] of states) this.keep(id, state)
      })
      this.blocks.set(block, loading)
      // A failed read is not kept: the next poll tries again.
      loading.catch(() => this.blocks.get(block) === loading && this.blocks.delete(block))
    }

    return loading
  }

  private async computeOne(deviceId: number, generation: number): Promise<ServedTarget | undefined> {
    const state = await computeTargetState(this.db, deviceId)
    if (!state) return undefined
    return generation === this.generation ? this.keep(deviceId, state) : servedOf(state)
  }

  private keep(deviceId: number, state: TargetState): ServedTarget {
    // Fresh targets only are kept, so dropping them all when there are too many loses nothing but work.
    if (this.targets.size >= MAX_TARGETS) this.targets.clear()
    const served = servedOf(state)
    this.targets.set(deviceId, served)
    return served
  }
}

function servedOf(state: TargetState): ServedTarget {
  const body = JSON.stringify(state)
  return {body, etag: entityTagOf(body)}
}
