import {FlotillaCommand} from '../../cli/base.js'

export default class UtilAvailableDrives extends FlotillaCommand {
  static override summary = 'List the drives an image could be flashed to'
  static override examples = ['<%= config.bin %> util available-drives', '<%= config.bin %> util available-drives --json']

  async run(): Promise<void> {
    await this.parse(UtilAvailableDrives)
    const {listDrives} = await import('../../image/drives.js')
    const {formatBytes} = await import('../../image/format.js')
    const drives = await listDrives()
    const rows = drives.map((drive) => ({
      device: drive.path,
      size: drive.size,
      model: [drive.vendor, drive.model].filter(Boolean).join(' ') || null,
      removable: drive.removable,
      read_only: drive.readOnly,
      type: drive.type,
      mountpoints: drive.mountpoints,
    }))
    this.output.result(rows, () => {
      if (rows.length === 0) {
        this.output.info('no drives found')
        return
      }

      this.output.table(rows, [
        {header: 'DEVICE', value: (row) => row.device},
        {header: 'SIZE', value: (row) => formatBytes(row.size)},
        {header: 'MODEL', value: (row) => row.model ?? (row.type === 'loop' ? 'loop device' : '')},
        {header: 'REMOVABLE', value: (row) => (row.removable ? 'yes' : 'no')},
        {header: 'MOUNTPOINTS', value: (row) => row.mountpoints.join(', ')},
      ])
    })
  }
}
