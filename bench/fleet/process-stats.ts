import {spawnSync} from 'node:child_process'
import {readFileSync} from 'node:fs'

const CLOCK_TICKS_PER_SECOND = Number(spawnSync('getconf', ['CLK_TCK'], {encoding: 'utf8'}).stdout.trim()) || 100

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
}

/**
 * Milliseconds the process's main thread (its event loop) has spent waiting for a core while it could have run, from
 * /proc/<pid>/task/<pid>/schedstat (its second field, in nanoseconds): time the machine's other work took from it.
 */
export function runQueueWaitMsOf(pid: number): number {
  return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6
}

/** Resident memory of a process in bytes, from /proc/<pid>/status. */
export function residentBytesOf(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return match ? Number(match[1]) * 1024 : 0
}

/** The most files this process may open (a child inherits it): each device link holds one socket on each side. */
export function openFileLimit(): number {
  const match = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
  return match ? Number(match[1]) : 1024
}

/** How much of one core processes used between two readings, in percent; and how long they waited for one. */
export class CpuMeter {
  private readonly start: number[]
  private readonly startWaits: number[]
  private readonly startedAt = performance.now()

  constructor(private readonly pids: number[]) {
    this.start = pids.map((pid) => cpuSecondsOf(pid))
    this.startWaits = pids.map((pid) => runQueueWaitMsOf(pid))
  }

  /** The share of the time since the meter was made that the busiest process's event loop waited for a core, in percent. */
  waitingPercent(): number {
    const elapsedMs = performance.now() - this.startedAt
    return Math.max(...this.pids.map((pid, index) => (100 * (runQueueWaitMsOf(pid) - this.startWaits[index])) / elapsedMs))
  }

  /** CPU seconds used since the meter was made. */
  used(): number {
    return this.pids.reduce((sum, pid, index) => sum + cpuSecondsOf(pid) - this.start[index], 0)
  }

  percent(): number {
    return (100 * this.used()) / ((performance.now() - this.startedAt) / 1000)
  }
}
