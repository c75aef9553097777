import {Args} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'

export default class OsVersions extends FlotillaCommand {
  static override summary = 'List the OS versions published for a device type, newest first'
  static override description =
    'Asks the fleet server (or balenaCloud) for the hostApp releases of the device type, as balena-cli does. ' +
    'A flotilla server publishes the images of its --images-dir.'

  static override examples = ['<%= config.bin %> os versions raspberrypi4-64', '<%= config.bin %> os versions raspberrypi4-64 --json']

  static override args = {'device-type': Args.string({required: true, description: 'device type slug (see "flotilla device-type list")'})}

  async run(): Promise<void> {
    const {args} = await this.parse(OsVersions)
    const {listOsVersions, selectOsVersion} = await import('../../sdk/os-images.js')
    const versions = await listOsVersions(await this.sdk(), args['device-type'])
    const latest = selectOsVersion(versions, 'latest', args['device-type'])
    this.output.result(versions, () =>
      this.output.table(versions, [
        {header: 'VERSION', value: (version) => version.raw_version},
        {header: 'ID', value: (version) => version.id},
        {header: 'LATEST', value: (version) => (version === latest ? 'yes' : '')},
      ]),
    )
  }
}
