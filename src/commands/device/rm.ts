import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {confirmDestructive} from '../../cli/prompts.js'

export default class DeviceRm extends FlotillaCommand {
  static override summary = 'Remove devices from their fleet'
  static override hiddenAliases = ['device:remove']
  static override strict = false
  static override examples = ['<%= config.bin %> device rm 7cf02a6 --yes', '<%= config.bin %> device rm 7cf02a6 b1e33c0 --yes']
  static override args = {device: Args.string({required: true, description: 'device UUIDs (or unique prefixes of 7+ characters)'})}
  static override flags = {yes: Flags.boolean({char: 'y', description: 'do not ask for confirmation'})}

  async run(): Promise<void> {
    const {argv, flags} = await this.parse(DeviceRm)
    const client = await this.sdk()
    const {getDevice, removeDevice} = await import('../../sdk/devices.js')
    const devices = await Promise.all((argv as string[]).map((reference) => getDevice(client, reference)))
    const names = devices.map((device) => `${device.uuid.slice(0, 7)} (${device.device_name})`).join(', ')
    if (!(await confirmDestructive(`Remove ${names}?`, flags.yes))) return
    for (const device of devices) await removeDevice(client, device)
    this.output.removed(devices.map((device) => device.uuid), `removed ${names}`)
  }
}
