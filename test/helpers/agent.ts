import {type ChildProcess, spawn} from 'node:child_process'

import {CLI_BIN, PROJECT_ROOT} from './cli.js'
import {eventually} from './fleet-api.js'

/** `flotilla agent start` as its own process, as a device runs it, to be killed like a power cut. */
export class AgentProcess {
  output = ''
  private child?: ChildProcess
  private exited?: Promise<void>

  constructor(private readonly args: string[]) {}

  /** Starts the agent and resolves with its local API port once it serves it. */
  async start(): Promise<number> {
    const child = spawn(process.execPath, [CLI_BIN, 'agent', 'start', ...this.args], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1', ...(process.env.DOCKER_HOST ? {DOCKER_HOST: process.env.DOCKER_HOST} : {})},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.child = child
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()))
    const collect = (chunk: string) => (this.output += chunk)
    child.stdout?.setEncoding('utf8').on('data', collect)
    child.stderr?.setEncoding('utf8').on('data', collect)
    const port = await eventually(async () => {
      if (child.exitCode !== null) throw new Error(`the agent exited (${child.exitCode}): ${this.output}`)
      return /local API on 127\.0\.0\.1:(\d+)/.exec(this.output)?.[1]
    }, `the agent to start\n${this.output}`, 30_000)
    return Number(port)
  }

  /** SIGKILL: no clean-up of any kind, as when the power goes. */
  async kill(): Promise<void> {
    this.child?.kill('SIGKILL')
    await this.exited
  }
}
