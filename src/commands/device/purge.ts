import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {confirmDestructive} from '../../cli/prompts.js'

export default class DevicePurge extends FlotillaCommand {
  static override summary = 'Delete the app data of a device'
  static override description = 'Stops the device\'s services, deletes their volumes (all the app\'s data) and starts them again.'
  static override examples = ['<%= config.bin %> device purge 7cf02a6 --yes']
  static override args = {device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'})}
  static override flags = {yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation'})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(DevicePurge)
    const client = await this.sdk()
    const {getDevice, sendDeviceAction} = await import('../../sdk/devices.js')
    const device = await getDevice(client, args.device)
    if (!(await confirmDestructive(`Purge ${device.uuid.slice(0, 7)} (${device.device_name})?`, flags.yes))) return
    await sendDeviceAction(client, device, 'purge')
    this.output.result({uuid: device.uuid, action: 'purge'}, () => this.output.success(`asked ${device.uuid.slice(0, 7)} (${device.device_name}) to purge its app data`))
  }
}
