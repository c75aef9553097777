import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class DeviceRestart extends FlotillaCommand {
  static override summary = 'Restart the services of a device'
  static override description = 'Restarts the containers of the device\'s app; its data and images stay.'
  static override examples = ['<%= config.bin %> device restart 7cf02a6']
  static override args = {device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'})}

  async run(): Promise<void> {
    const {args} = await this.parse(DeviceRestart)
    const client = await this.sdk()
    const {getDevice, sendDeviceAction} = await import('../../sdk/devices.js')
    const device = await getDevice(client, args.device)
    await sendDeviceAction(client, device, 'restart')
    this.output.result({uuid: device.uuid, action: 'restart'}, () => this.output.success(`asked ${device.uuid.slice(0, 7)} (${device.device_name}) to restart its services`))
  }
}
