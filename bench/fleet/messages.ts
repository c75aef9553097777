/** What the fleet bench's coordinator (bench/fleet.ts) and its simulated-agent processes (agents.ts) tell each other. */

export interface SimulatedDevice {
  uuid: string
  key: string
}

/** What a device reports: the release it runs, as an agent that has converged reports it. */
export interface ReportedRelease {
  appUuid: string
  commit: string
  image: string
}

/** What the load generator cost the latencies it measured: near zero when they are the server's and the wire's. */
export interface GeneratorStats {
  /** Polls and reports sent while measuring. */
  sentPolls: number
  sentReports: number
  /** p99 of the time a request waited in the generator for a socket (ms). */
  socketWaitP99: number
  /** p99 of the generator's event-loop delay while measuring (ms): how late it sends and reads. */
  loopDelayP99: number
  /** Sockets open at the end of the window. */
  sockets: number
}

export type ToAgents =
  /** Poll (If-None-Match) every pollMs and report every reportMs, each device from a random phase, until `stop`. */
  | {type: 'start'; url: string; devices: SimulatedDevice[]; pollMs: number; reportMs: number; release: ReportedRelease; goalMs: number}
  /** Answered once every device's first two polls and reports are answered and the backlog they left has drained. */
  | {type: 'warmed'}
  /** Samples from now on count. */
  | {type: 'measure'}
  | {type: 'stop'}
  /** Open a device link for each device (with the agent's own link client) and fetch each one's target once. */
  | {type: 'link'; url: string; ssh: {host: string; port: number; hostKey?: string}; devices: SimulatedDevice[]; dataDir: string}
  | {type: 'progress'}
  | {type: 'unlink'}

export type FromAgents =
  /** Milliseconds from `start` until every device's first poll and report were answered, and until the backlog drained (or the deadline passed: not settled). */
  | {type: 'warmed'; firstMs: number; settledMs: number; settled: boolean}
  /** `unavailable`: of the errors, the 503s (haproxy's answer when it holds no server up, with `--instances`). */
  | {type: 'polled'; polls: number[]; reports: number[]; generator: GeneratorStats; errors: number; unavailable: number; firstError?: string}
  | {type: 'linked'; linked: number; fetched: number; linkFailures: number; firstError?: string}
  /** Epoch ms of each update notice and of each fetch of a changed target, since the link went up. */
  | {type: 'progress'; notices: number[]; changedFetches: number[]; errors: number; firstError?: string}
  | {type: 'unlinked'}
