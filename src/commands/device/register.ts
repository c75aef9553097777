import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {showDevice} from '../../cli/views.js'

export default class DeviceRegister extends FlotillaCommand {
  static override summary = 'Register a new device in a fleet'
  static override description = 'Pre-registers a device, as a provisioned device would register itself; prints its UUID.'
  static override examples = [
    '<%= config.bin %> device register myorg/myfleet',
    '<%= config.bin %> device register myfleet --uuid 0123456789abcdef0123456789abcdef --device-type raspberrypi4-64',
  ]

  static override args = {fleet: Args.string({required: true, description: 'fleet slug (org/name) or name'})}
  static override flags = {
    uuid: Flags.string({char: 'u', description: 'the device UUID (default: a new random one)'}),
    'device-type': Flags.string({aliases: ['deviceType'], description: "device type slug (default: the fleet's)"}),
    name: Flags.string({char: 'n', description: 'device name (default: one the server chooses)'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(DeviceRegister)
    const {registerDevice} = await import('../../sdk/devices.js')
    const device = await registerDevice(await this.sdk(), {fleet: args.fleet, uuid: flags.uuid, deviceType: flags['device-type'], name: flags.name})
    this.output.result(device, () => {
      this.output.success(`registered device ${device.uuid} in fleet ${device.fleet}`)
      showDevice(this.output, device)
    })
  }
}
