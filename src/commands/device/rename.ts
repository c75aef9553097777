import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class DeviceRename extends FlotillaCommand {
  static override summary = 'Rename a device'
  static override examples = ['<%= config.bin %> device rename 7cf02a6 kitchen-sensor']
  static override args = {
    device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'}),
    newName: Args.string({required: true, description: 'the new name'}),
  }

  async run(): Promise<void> {
    const {args} = await this.parse(DeviceRename)
    const client = await this.sdk()
    const {getDevice, renameDevice} = await import('../../sdk/devices.js')
    const device = await renameDevice(client, await getDevice(client, args.device), args.newName)
    this.output.result(device, () => this.output.success(`renamed ${device.uuid.slice(0, 7)} to ${device.device_name}`))
  }
}
