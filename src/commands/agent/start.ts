import path from 'node:path'

import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {UsageError} from '../../errors.js'

/** `unix:///var/run/docker.sock`, `/var/run/docker.sock` or `tcp://127.0.0.1:2375`, as DOCKER_HOST takes them. */
function dockerOptionsOf(dockerHost: string | undefined): {socketPath: string} | {host: string; port: number; protocol: 'http'} | undefined {
  if (!dockerHost) return undefined
  if (dockerHost.startsWith('unix://')) return {socketPath: dockerHost.slice('unix://'.length)}
  if (dockerHost.startsWith('/')) return {socketPath: dockerHost}
  const url = new URL(dockerHost.replace(/^tcp:/, 'http:'))
  return {host: url.hostname, port: Number(url.port || 2375), protocol: 'http'}
}

/** A host path means nothing relative to where the agent runs: it must be absolute. */
function hostDataDirOf(flag: string | undefined): string | undefined {
  if (flag !== undefined && !path.isAbsolute(flag)) throw new UsageError(`--host-data-dir must be an absolute path on the Docker host, not "${flag}"`)
  return flag
}

export default class AgentStart extends FlotillaCommand {
  static override summary = 'Run the device agent: register, pull releases, run services, ship logs'
  static override description =
    'Runs until interrupted. With only a provisioning key in config.json, the agent registers the device first and rewrites config.json (atomically) with its identity. Services keep running when the agent stops or the server is unreachable. Log lines wait in <data-dir>/logs.journal until the server has stored them, with where the output of each service was read up to, so a restart of the agent or an outage of the server loses none (at most 4 MiB of them: older ones are then dropped, and a line says how many); a power loss can lose the last few seconds of them. The local supervisor API asks for the key in <data-dir>/supervisor-api-key on every route but /ping (?apikey= or Authorization: Bearer); a service labelled io.balena.features.supervisor-api gets it as BALENA_SUPERVISOR_API_KEY with the API address, and reaches the API from its own network through the internal engine network supervisor0, on whose gateway the API then listens too.'

  static override examples = [
    '<%= config.bin %> agent start --config config.json',
    '<%= config.bin %> agent start --config /boot/config.json --data-dir /var/lib/flotilla --docker-host unix:///var/run/docker.sock',
    '<%= config.bin %> agent start --config config.json --host-network --poll-interval 5',
    '<%= config.bin %> agent start --config config.json --ssh-port 22222 --ssh-host 127.0.0.1',
    '<%= config.bin %> agent start --config config.json --reboot-command "sudo systemctl reboot" --shutdown-command "sudo systemctl poweroff"',
  ]

  static override flags = {
    config: Flags.string({char: 'c', required: true, description: 'the device config.json (from "flotilla config generate")'}),
    'data-dir': Flags.string({description: "where the agent keeps its state (default: the user's data dir)"}),
    'host-data-dir': Flags.string({description: 'where the Docker host sees --data-dir, when the agent runs in a container with it mounted elsewhere (services bind-mount their update-lock folder from it)'}),
    'docker-host': Flags.string({description: 'Docker engine to run services on (default: DOCKER_HOST, else the local socket)', env: 'DOCKER_HOST'}),
    'host-network': Flags.boolean({description: 'run every service with the host network'}),
    'poll-interval': Flags.integer({description: "seconds between target-state polls (default: config.json's appUpdatePollInterval)", min: 1}),
    'local-api-port': Flags.integer({description: "port of the local supervisor API on 127.0.0.1, and on supervisor0's gateway once a service asks for the API (default: 48484)", min: 0}),
    'ssh-port': Flags.integer({
      description: "port for direct SSH logins to the device, by config.json's os.sshKeys; 0 picks a free one (default: 22222 when config.json has developmentMode, else none)",
      min: 0,
      max: 65_535,
    }),
    'ssh-host': Flags.string({description: 'address the --ssh-port listens on', default: '0.0.0.0'}),
    'reboot-command': Flags.string({
      description:
        'command that reboots the host when the device is asked to reboot, run without a shell after the services are stopped (on the engine\'s host, chrooted, when the agent runs in a container)',
      default: 'systemctl reboot',
    }),
    'shutdown-command': Flags.string({
      description:
        'command that powers the host off when the device is asked to shut down, run without a shell after the services are stopped (on the engine\'s host, chrooted, when the agent runs in a container)',
      default: 'systemctl poweroff',
    }),
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(AgentStart)
    const {startAgent} = await import('../../agent/agent.js')
    const agent = await startAgent({
      configPath: path.resolve(flags.config),
      dataDir: path.resolve(flags['data-dir'] ?? path.join(this.config.dataDir, 'agent')),
      hostDataDir: hostDataDirOf(flags['host-data-dir']),
      dockerOptions: dockerOptionsOf(flags['docker-host']),
      hostNetwork: flags['host-network'],
      pollIntervalMs: flags['poll-interval'] === undefined ? undefined : flags['poll-interval'] * 1000,
      localApiPort: flags['local-api-port'],
      sshListen: flags['ssh-port'] === undefined ? undefined : {host: flags['ssh-host'], port: flags['ssh-port']},
      rebootCommand: flags['reboot-command'],
      shutdownCommand: flags['shutdown-command'],
      agentVersion: this.config.version,
      logger: (line) => this.output.info(line),
    })
    this.output.info(`flotilla agent running; local API on 127.0.0.1:${agent.localApiPort}${agent.sshPort === undefined ? '' : `; SSH on port ${agent.sshPort}`}`)
    agent.registered.then(
      (uuid) => this.output.info(`device ${uuid} registered`),
      () => {},
    )
    await new Promise<void>((resolve) => {
      const stop = () => resolve()
      process.once('SIGINT', stop)
      process.once('SIGTERM', stop)
    })
    await agent.stop()
    this.output.info('flotilla agent stopped; services keep running')
  }
}
