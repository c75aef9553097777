import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {confirmDestructive} from '../../cli/prompts.js'

export default class DeviceReboot extends FlotillaCommand {
  static override summary = 'Reboot a device'
  static override description = 'The device reboots and is offline meanwhile. --force reboots even while an update lock is held.'
  static override examples = ['<%= config.bin %> device reboot 7cf02a6 --yes']
  static override args = {device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'})}
  static override flags = {yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation'}), force: Flags.boolean({char: 'f', description: 'even while an update lock is held'})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(DeviceReboot)
    const client = await this.sdk()
    const {getDevice, sendDeviceAction} = await import('../../sdk/devices.js')
    const device = await getDevice(client, args.device)
    if (!(await confirmDestructive(`Reboot ${device.uuid.slice(0, 7)} (${device.device_name})?`, flags.yes))) return
    await sendDeviceAction(client, device, 'reboot', {force: flags.force})
    this.output.result({uuid: device.uuid, action: 'reboot'}, () => this.output.success(`asked ${device.uuid.slice(0, 7)} (${device.device_name}) to reboot`))
  }
}
