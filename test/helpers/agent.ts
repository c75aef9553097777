import assert from 'node:assert/strict'
import {type ChildProcess, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'

import Docker from 'dockerode'

import {CLI_BIN, PROJECT_ROOT, runCli} from './cli.js'
import {BASE_IMAGE} from './docker.js'
import {eventually, type FleetApi} from './fleet-api.js'

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

/**
 * A successful release of one service `main` (its compose entry given) whose image is the test base image, tagged
 * in the local engine under the release's image name so that an agent on this machine has it without a registry.
 * Remove `imageTag` when done.
 */
export async function releaseOfBaseImage(api: FleetApi, token: string, fleetId: number, main: Record<string, unknown>, commit = randomBytes(16).toString('hex')): Promise<Awaited<ReturnType<FleetApi['createRelease']>> & {imageTag: string}> {
  const release = await api.createRelease(token, fleetId, commit, main)
  await new Docker().getImage(BASE_IMAGE).tag({repo: release.location, tag: 'latest'})
  return {...release, imageTag: `${release.location}:latest`}
}

/** `flotilla config generate --fleet <slug> -o <file>`, as a user provisions a device; fails the test if the CLI does. */
export async function generateDeviceConfig(options: {serverUrl: string; token: string; home: string; fleetSlug: string; file: string; args?: string[]}): Promise<string> {
  const env = {HOME: options.home, FLOTILLA_URL: options.serverUrl, FLOTILLA_TOKEN: options.token}
  const generated = await runCli(['config', 'generate', '--fleet', options.fleetSlug, '-o', options.file, ...(options.args ?? [])], {env})
  assert.equal(generated.exitCode, 0, generated.stderr)
  return options.file
}
