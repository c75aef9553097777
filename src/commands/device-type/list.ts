import {FlotillaCommand} from '../../cli/base.js'

export default class DeviceTypeList extends FlotillaCommand {
  static override summary = 'List the device types the server knows'
  static override hiddenAliases = ['device-types', 'devices:supported']
  static override examples = ['<%= config.bin %> device-type list', '<%= config.bin %> device-type list --json']

  async run(): Promise<void> {
    await this.parse(DeviceTypeList)
    const {listDeviceTypes} = await import('../../sdk/device-types.js')
    const types = await listDeviceTypes(await this.sdk())
    this.output.result(types, () =>
      this.output.table(types, [
        {header: 'SLUG', value: (type) => type.slug},
        {header: 'ARCH', value: (type) => type.arch},
        {header: 'NAME', value: (type) => type.name},
      ]),
    )
  }
}
