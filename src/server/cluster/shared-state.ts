import type {ApiKeyCache} from '../auth/api-key-cache.js'
import type {DeviceActionQueue} from '../device-actions.js'
import type {DeviceLogStore} from '../device-logs.js'
import type {DeviceLinks} from '../gateway/device-links.js'
import type {Heartbeats} from '../heartbeats.js'
import type {TargetStates} from '../target-states.js'
import type {ClusterBus, ClusterEvent, ReceivedClusterEvent} from './bus.js'

/** What one server instance keeps in memory that another instance's writes can make stale. */
export interface InstanceState {
  targetStates: TargetStates
  apiKeys: ApiKeyCache
  heartbeats: Heartbeats
  links: DeviceLinks
  deviceLogs: DeviceLogStore
  deviceActions: DeviceActionQueue
  onError: (error: unknown, message: string) => void
}

/**
 * Devices whose rows this instance wrote, gathered until the next turn of the event loop, then published: those
 * written with a state report with its digest (the others keep what they know when it is that report), the others
 * plainly (the others forget them). A device written twice in one turn is told as its last write left it.
 */
export class DevicesWrittenBatcher {
  private written = new Map<number, string | undefined>()
  private scheduled = false

  constructor(private readonly publish: (event: Extract<ClusterEvent, {type: 'devices'}>) => Promise<void>) {}

  add(deviceId: number, reportDigest?: string): void {
    this.written.delete(deviceId)
    this.written.set(deviceId, reportDigest)
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      const written = this.written
      this.written = new Map()
      const plain: number[] = []
      const reported: {ids: number[]; digests: string[]} = {ids: [], digests: []}
      for (const [id, digest] of written) {
        if (digest === undefined) {
          plain.push(id)
        } else {
          reported.ids.push(id)
          reported.digests.push(digest)
        }
      }

      if (plain.length > 0) void this.publish({type: 'devices', ids: plain})
      if (reported.ids.length > 0) void this.publish({type: 'devices', ...reported})
    })
  }
}

/** Something a target is made of may have changed: this instance's kept targets, actors and heartbeats go, and its linked devices are told. */
function dropTargetCaches(state: InstanceState): void {
  state.targetStates.invalidate()
  state.apiKeys.clear()
  state.heartbeats.forgetAll()
  state.links.targetsMaybeChanged()
}

function closeLinksOfRevokedKeys(state: InstanceState): Promise<void> {
  // The deletion itself succeeded: a failure here is logged, not answered as the request's.
  return state.links.closeLinksOfRevokedKeys().catch((error: unknown) => state.onError(error, 'closing links of revoked keys failed'))
}

/** Acts on another instance's event as on the same thing happening here. */
function actOn(state: InstanceState, event: ReceivedClusterEvent): void {
  switch (event.type) {
    case 'targets': {
      dropTargetCaches(state)
      break
    }

    case 'keys': {
      state.apiKeys.clear()
      void closeLinksOfRevokedKeys(state)
      break
    }

    case 'devices': {
      if (event.digests) state.heartbeats.reportsWrittenElsewhere(event.ids, event.digests)
      else state.heartbeats.forgetWrittenElsewhere(event.ids)
      break
    }

    case 'logs': {
      void state.deviceLogs.catchUp(event.ids)
      break
    }

    case 'actions': {
      state.deviceActions.wake(event.ids)
      break
    }

    case 'resync': {
      // Events may have been missed while the listener was away: everything may have changed.
      dropTargetCaches(state)
      void closeLinksOfRevokedKeys(state)
      void state.deviceLogs.catchUpAll()
      state.deviceActions.wakeAll()
      break
    }
  }
}

/**
 * Makes the server's `targetsMaybeChanged` and `keysMaybeRevoked` (ServerContext) act here at once and on every
 * other instance through the bus, and this instance act on theirs.
 */
export function shareStateAcrossInstances(bus: ClusterBus, state: InstanceState): {targetsMaybeChanged(): void; keysMaybeRevoked(): Promise<void>} {
  bus.subscribe((event) => actOn(state, event))
  return {
    targetsMaybeChanged() {
      dropTargetCaches(state)
      void bus.publish({type: 'targets'})
    },
    async keysMaybeRevoked() {
      state.apiKeys.clear()
      // Told before the request is answered, so the revoked key's next request fails on any instance.
      await bus.publish({type: 'keys'})
      await closeLinksOfRevokedKeys(state)
    },
  }
}
