import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class DeviceMove extends FlotillaCommand {
  static override summary = 'Move a device to another fleet'
  static override description = 'The device follows the new fleet; a release pin it had is cleared.'
  static override examples = ['<%= config.bin %> device move 7cf02a6 --fleet myorg/otherfleet']
  static override args = {device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'})}
  static override flags = {fleet: Flags.string({char: 'f', required: true, description: 'the fleet to move it to (slug or name)'})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(DeviceMove)
    const client = await this.sdk()
    const {getDevice, moveDevice} = await import('../../sdk/devices.js')
    const device = await moveDevice(client, await getDevice(client, args.device), flags.fleet)
    this.output.result(device, () => this.output.success(`moved ${device.uuid.slice(0, 7)} to fleet ${device.fleet}`))
  }
}
