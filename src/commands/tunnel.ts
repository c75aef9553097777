import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../cli/base.js'
import {resolveOnlineDevice} from '../cli/device-choice.js'
import {ExpectedError, InterruptedError, NotLoggedInError, UsageError} from '../errors.js'

export default class Tunnel extends FlotillaCommand {
  static override summary = "Reach a device's ports from this machine"
  static override description = [
    "Listens on a local port for each --port mapping and carries every connection made there, through the server, to that port on the device (its own 127.0.0.1). Port 22222 is the device's SSH service. Runs until interrupted (Ctrl-C); a connection the server cannot carry is reported and closed, and the others go on.",
    'A mapping is REMOTE[:[LOCALADDRESS:]LOCALPORT]: 22222 listens on 127.0.0.1:22222, 22222:4321 on 127.0.0.1:4321, 8080:0.0.0.0:9000 on every interface on port 9000. Local port 0 takes any free port, printed once listening. With --json, each mapping is printed as one JSON object a line ({uuid, localAddress, localPort, remotePort}).',
  ].join('\n\n')

  static override hiddenAliases = ['device:tunnel']
  static override examples = [
    '<%= config.bin %> tunnel 7cf02a6 -p 22222',
    '<%= config.bin %> tunnel 7cf02a6 -p 22222:4321 -p 8080:0.0.0.0:9000',
    '<%= config.bin %> tunnel 7cf02a6 --port 80:0 --json',
    '<%= config.bin %> tunnel myorg/myfleet -p 22222:4321',
  ]

  static override args = {
    device: Args.string({required: true, ignoreStdin: true, description: 'device UUID (or a unique prefix of 7+ characters), or a fleet to pick an online device of'}),
  }

  static override flags = {
    port: Flags.string({
      char: 'p',
      multiple: true,
      multipleNonGreedy: true,
      description: 'REMOTE[:[LOCALADDRESS:]LOCALPORT] — device port and where to offer it locally (repeat for several)',
    }),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Tunnel)
    const {classifyDeviceArgument, shortUuid} = await import('../sdk/device-ssh.js')
    const {openTunnel, parsePortMapping} = await import('../sdk/tunnel.js')
    if (!flags.port || flags.port.length === 0) throw new UsageError(`missing --port: name the device ports to reach, e.g. ${this.config.bin} tunnel ${args.device} -p 22222:4321`)
    const mappings = flags.port.map((text) => parsePortMapping(text))
    const target = classifyDeviceArgument(args.device)
    if (target.kind === 'address') {
      throw new UsageError(`"${args.device}" looks like a device on your network: tunnels go through the server to a device UUID — connect to ${target.host}'s ports directly instead`)
    }

    const client = await this.sdk()
    const {token} = await this.settings.resolveRemote()
    if (!token) throw new NotLoggedInError()
    const {whoami} = await import('../sdk/auth.js')
    const [device, actor, proxy] = await Promise.all([resolveOnlineDevice(client, target), whoami(client), client.endpoint('tunnel')])
    const device7 = shortUuid(device.uuid)
    const tunnel = await openTunnel({
      proxy,
      uuid: device.uuid,
      username: actor.username ?? 'root',
      token,
      mappings,
      onEvent: (event) => {
        if (event.type === 'connection-failed') this.output.warn(`${event.mapping.localAddress}:${event.mapping.boundPort} → ${device7}:${event.mapping.remotePort}: ${event.message}`)
      },
    })

    for (const mapping of tunnel.mappings) {
      const line = {uuid: device.uuid, localAddress: mapping.localAddress, localPort: mapping.boundPort, remotePort: mapping.remotePort}
      if (this.output.json) this.output.printJsonLine(line)
      else this.output.line(`tunnel ${mapping.localAddress}:${mapping.boundPort} → ${device7}:${mapping.remotePort}`)
    }

    if (!this.output.json) this.output.info('waiting for connections — press Ctrl-C to close the tunnel')
    const signal = await new Promise<NodeJS.Signals>((resolve) => {
      process.once('SIGINT', resolve)
      process.once('SIGTERM', resolve)
    })
    await tunnel.close()
    if (signal === 'SIGINT') throw new InterruptedError('tunnel closed (interrupted)')
    throw new ExpectedError('tunnel closed (terminated)', {exitCode: 143})
  }
}
