import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {confirmDestructive} from '../../cli/prompts.js'

export default class DeviceShutdown extends FlotillaCommand {
  static override summary = 'Shut a device down'
  static override description = 'The device powers off and stays offline until someone powers it on again. --force ignores update locks.'
  static override examples = ['<%= config.bin %> device shutdown 7cf02a6 --yes']
  static override args = {device: Args.string({required: true, description: 'device UUID (or a unique prefix of 7+ characters)'})}
  static override flags = {yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation'}), force: Flags.boolean({char: 'f', description: 'even while an update lock is held'})}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(DeviceShutdown)
    const client = await this.sdk()
    const {getDevice, sendDeviceAction} = await import('../../sdk/devices.js')
    const device = await getDevice(client, args.device)
    if (!(await confirmDestructive(`Shutdown ${device.uuid.slice(0, 7)} (${device.device_name})?`, flags.yes))) return
    await sendDeviceAction(client, device, 'shutdown', {force: flags.force})
    this.output.result({uuid: device.uuid, action: 'shutdown'}, () => this.output.success(`asked ${device.uuid.slice(0, 7)} (${device.device_name}) to shut down`))
  }
}
