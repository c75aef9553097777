import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {deviceColumns} from '../../cli/views.js'

export default class DeviceList extends FlotillaCommand {
  static override summary = 'List your devices'
  static override hiddenAliases = ['devices']
  static override examples = ['<%= config.bin %> device list', '<%= config.bin %> devices --fleet myorg/myfleet --json']
  static override flags = {fleet: Flags.string({char: 'f', description: 'only the devices of this fleet (slug or name)'})}

  async run(): Promise<void> {
    const {flags} = await this.parse(DeviceList)
    const {listDevices} = await import('../../sdk/devices.js')
    const devices = await listDevices(await this.sdk(), {fleet: flags.fleet})
    this.output.result(devices, () => this.output.table(devices, deviceColumns(this.output, devices)))
  }
}
