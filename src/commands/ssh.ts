import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../cli/base.js'
import {resolveOnlineDevice} from '../cli/device-choice.js'
import {UsageError} from '../errors.js'

export default class Ssh extends FlotillaCommand {
  static override summary = 'Open a shell on a device, or run a command there'
  static override description = [
    "Connects with your system's OpenSSH client (`ssh`, or the program FLOTILLA_SSH_BINARY names) to the server's SSH gateway, which reaches the device through its agent: the host OS by default, or the container of SERVICE. Your SSH keys (see \"flotilla ssh-key add\") and your ssh config apply; --identity picks a key. When the server announces its host key, the session checks it.",
    'DEVICE is a UUID (or a unique prefix of 7+ characters); or a fleet (name or slug), to pick one of its online devices; or the IP address or host name (mypi.local) of a device on your network, reached directly on its own SSH port 22222 as root, without the server (development mode).',
    'A command after "--" runs instead of a shell. Without a terminal, stdin is passed through, so commands can be piped in. The exit status is the remote command\'s, or 255 when ssh could not connect.',
  ].join('\n\n')

  static override usage = '<%= command.id %> DEVICE [SERVICE] [-p <port>] [-t] [--verbose] [--identity <file>] [-- COMMAND...]'
  static override hiddenAliases = ['device:ssh']
  static override strict = false
  static override examples = [
    '<%= config.bin %> ssh 7cf02a6',
    '<%= config.bin %> ssh 7cf02a6 main',
    '<%= config.bin %> ssh 7cf02a6 -- uname -a',
    'echo "uname -a; exit" | <%= config.bin %> ssh 7cf02a6',
    '<%= config.bin %> ssh myorg/myfleet',
    '<%= config.bin %> ssh 192.168.1.23 main --identity ~/.ssh/id_ed25519',
    'FLOTILLA_SSH_BINARY=/usr/local/bin/ssh <%= config.bin %> ssh 7cf02a6 --verbose',
  ]

  static override args = {
    device: Args.string({required: true, ignoreStdin: true, description: 'device UUID (or a unique prefix of 7+ characters), fleet, or IP address/host name of a local device'}),
    service: Args.string({ignoreStdin: true, description: "service whose container to enter (default: the device's host OS)"}),
  }

  static override flags = {
    port: Flags.integer({char: 'p', description: "SSH port (default: the gateway's, or 22222 for a local device)"}),
    tty: Flags.boolean({char: 't', description: 'force a pseudo-terminal (default: when stdin and stdout are terminals)'}),
    verbose: Flags.boolean({description: 'print what ssh does (ssh -v)'}),
    identity: Flags.string({description: 'private key file to authenticate with (ssh -i)'}),
  }

  async run(): Promise<void> {
    // Everything after "--" is the remote command, never an argument or a flag of ours.
    // (parse() replaces this.argv with what it was given, so split a copy first.)
    const all = [...this.argv]
    const dash = all.indexOf('--')
    const words = dash === -1 ? [] : all.slice(dash + 1)
    const {args, flags, argv} = await this.parse(Ssh, dash === -1 ? all : all.slice(0, dash))
    if (flags.port !== undefined && !(flags.port >= 1 && flags.port <= 65_535)) throw new UsageError(`--port must be between 1 and 65535, not ${flags.port}`)
    if (argv.length > 2) throw new UsageError(`unexpected "${argv.slice(2).join(' ')}" — put the command after "--": ${this.config.bin} ssh ${args.device} -- <command>`)
    const {classifyDeviceArgument, directSshArgs, gatewaySshArgs, getGatewayTarget, runSsh, sshBinary, wantsTty, writeGatewayKnownHosts} = await import('../sdk/device-ssh.js')
    const options = {
      tty: wantsTty(flags.tty),
      verbose: flags.verbose,
      identity: flags.identity,
      port: flags.port,
      service: args.service,
      command: words.length > 0 ? words.join(' ') : undefined,
    }

    const target = classifyDeviceArgument(args.device)
    let sshArgs: string[]
    if (target.kind === 'address') {
      sshArgs = directSshArgs(target.host, options)
    } else {
      const client = await this.sdk()
      const device = await resolveOnlineDevice(client, target)
      const gateway = await getGatewayTarget(client)
      const knownHostsFile = gateway.hostKey ? await writeGatewayKnownHosts(this.config.cacheDir, gateway.host, flags.port ?? gateway.port, gateway.hostKey) : undefined
      sshArgs = gatewaySshArgs(gateway, device.uuid, {...options, knownHostsFile})
    }

    const binary = sshBinary()
    if (flags.verbose) this.output.info(`running ${binary} ${sshArgs.map((word) => (/[\s"'$;&|]/.test(word) ? JSON.stringify(word) : word)).join(' ')}`)
    const status = await runSsh(binary, sshArgs)
    if (status !== 0) this.exit(status)
  }
}
