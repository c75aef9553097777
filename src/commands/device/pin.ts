import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {UsageError} from '../../errors.js'

export default class DevicePin extends FlotillaCommand {
  static override summary = 'Pin a device to a release, or let it follow its fleet again'
  static override description = "A pinned device runs that release whatever its fleet runs; moving it to another fleet unpins it."
  static override examples = ['<%= config.bin %> device pin 7cf02a6 3a1b2c4', '<%= config.bin %> device pin 7cf02a6 --unpin']
  static override args = {
    device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'}),
    release: Args.string({ignoreStdin: true, description: 'release id or commit (7+ characters) of the device\'s fleet'}),
  }

  static override flags = {unpin: Flags.boolean({description: "follow the fleet's release again"})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(DevicePin)
    if (flags.unpin === Boolean(args.release)) throw new UsageError('give a release to pin to, or --unpin')
    const client = await this.sdk()
    const {getDevice, pinDevice} = await import('../../sdk/devices.js')
    const {getRelease} = await import('../../sdk/releases.js')
    const [device, release] = await Promise.all([getDevice(client, args.device), args.release ? getRelease(client, args.release) : null])
    const pinned = await pinDevice(client, device, release)
    this.output.result(pinned, () =>
      this.output.success(release ? `pinned ${device.uuid.slice(0, 7)} to release ${release.commit.slice(0, 7)}` : `${device.uuid.slice(0, 7)} follows its fleet's release again`),
    )
  }
}
