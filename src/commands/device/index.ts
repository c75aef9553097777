import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {showDevice} from '../../cli/views.js'

export default class DeviceInfo extends FlotillaCommand {
  static override summary = 'Show a device'
  static override hiddenAliases = ['device:info']
  static override examples = ['<%= config.bin %> device 7cf02a6', '<%= config.bin %> device 7cf02a6 --json']
  static override args = {device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'})}

  async run(): Promise<void> {
    const {args} = await this.parse(DeviceInfo)
    const {getDevice} = await import('../../sdk/devices.js')
    const device = await getDevice(await this.sdk(), args.device)
    this.output.result(device, () => showDevice(this.output, device))
  }
}
