import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class DeviceIdentify extends FlotillaCommand {
  static override summary = 'Ask a device to identify itself'
  static override description = 'balenaOS devices blink their LED; a flotilla agent, which drives no LED of its host, writes a line to the device\'s logs instead ("flotilla logs <device>").'
  static override examples = ['<%= config.bin %> device identify 7cf02a6']
  static override args = {device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'})}

  async run(): Promise<void> {
    const {args} = await this.parse(DeviceIdentify)
    const client = await this.sdk()
    const {getDevice, sendDeviceAction} = await import('../../sdk/devices.js')
    const device = await getDevice(client, args.device)
    await sendDeviceAction(client, device, 'identify')
    this.output.result({uuid: device.uuid, action: 'identify'}, () => this.output.success(`asked ${device.uuid.slice(0, 7)} (${device.device_name}) to identify itself`))
  }
}
