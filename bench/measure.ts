import {spawnSync} from 'node:child_process'

/** Wall time of one run of a command, in milliseconds. */
export function timeCommand(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const start = process.hrtime.bigint()
  const result = spawnSync(command, args, {env, stdio: ['ignore', 'ignore', 'pipe']})
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed: ${result.stderr.toString()}`)
  return elapsed
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

export function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]
}

/** Runs each case in turn, interleaved, so that load on the machine weighs on all of them alike. */
export function medianTimes(cases: Record<string, () => number>, rounds: number): Record<string, number> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((name) => [name, []]))
  for (const measure of Object.values(cases)) measure()
  for (let round = 0; round < rounds; round++) {
    for (const [name, measure] of Object.entries(cases)) samples[name].push(measure())
  }

  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]))
}
