import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {canPrompt, confirmDestructive, promptChoice} from '../../cli/prompts.js'
import {ExpectedError, InterruptedError, UsageError} from '../../errors.js'

export default class OsFlash extends FlotillaCommand {
  static override summary = 'Write an OS image to an SD card, USB drive or file, then verify it'
  static override description =
    'Reads raw .img, .gz, .xz, .zip (the largest file inside) and .bz2 images as a stream. With a .bmap beside the image only its mapped blocks are written and verified; ' +
    'a raw image without one is read for the blocks its FAT and ext4 file systems use. ' +
    'Refuses system drives, the drive holding the image, read-only drives and drives smaller than the image; non-removable drives need --allow-system-drive.'

  static override hiddenAliases = ['local:flash']
  static override examples = [
    '<%= config.bin %> os flash balena.img.zip',
    '<%= config.bin %> os flash balena.img --drive /dev/sdb --yes',
    '<%= config.bin %> os flash balena.img.gz --drive copy.img --yes --json',
  ]

  static override args = {image: Args.string({required: true, description: 'the OS image (.img, .gz, .xz, .zip, .bz2)'})}
  static override flags = {
    drive: Flags.string({char: 'd', description: 'drive to erase (/dev/sdb) or a file to write; asked for on a terminal'}),
    yes: Flags.boolean({char: 'y', description: 'do not ask before erasing the drive'}),
    verify: Flags.boolean({default: true, allowNo: true, description: 'read back and compare what was written (--no-verify to skip)'}),
    'allow-system-drive': Flags.boolean({description: 'allow erasing a non-removable drive (needs --yes too when not asked on a terminal)'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(OsFlash)
    const {openImageSource} = await import('../../image/sources.js')
    const {planBlockMap} = await import('../../image/block-map-plan.js')
    const {resolveDestination, eligibleDrives} = await import('../../image/destination.js')
    const {describeDrive} = await import('../../image/safety.js')
    const {formatBytes} = await import('../../image/format.js')

    const source = await openImageSource(args.image)
    try {
      const {map: blockMap, origin} = await planBlockMap(source)
      const imageSize = blockMap?.imageSize ?? source.size
      const destinationOptions = {imagePath: args.image, imageSize, allowSystemDrive: flags['allow-system-drive']}
      let drivePath = flags.drive
      if (!drivePath) {
        if (!canPrompt()) throw new UsageError('missing --drive (no terminal to ask on) — see "flotilla util available-drives", and add --yes to confirm')
        const choices = await eligibleDrives(destinationOptions)
        if (choices.length === 0) throw new ExpectedError('no drive can be flashed: plug in an SD card or USB drive (see "flotilla util available-drives")')
        drivePath = await promptChoice('Drive to erase', choices.map(({drive}) => ({name: describeDrive(drive), value: drive.path})), 'drive')
      }

      const destination = await resolveDestination(drivePath, destinationOptions)
      let target
      if (destination.kind === 'drive') {
        const {drive, verdict} = destination
        if (verdict.refusals.length > 0) throw new ExpectedError(`refusing to flash ${drive.path}: ${verdict.refusals.join('; ')}`)
        for (const warning of verdict.warnings) this.output.warn(warning)
        if (!(await confirmDestructive(`erase ${describeDrive(drive)} and write ${args.image} to it?`, flags.yes))) throw new InterruptedError('nothing written')
        const {unmountDrive} = await import('../../image/unmount.js')
        const unmounted = await unmountDrive(drive)
        if (unmounted.length > 0) this.output.info(`unmounted ${unmounted.join(', ')}`)
        target = {path: drive.path, isBlockDevice: true, size: drive.size, sectorSize: drive.logicalSectorSize}
      } else {
        if (destination.exists && !(await confirmDestructive(`overwrite ${destination.path}?`, flags.yes))) throw new InterruptedError('nothing written')
        target = {path: destination.path, isBlockDevice: false}
      }

      if (blockMap && !this.output.json) this.output.info(`using ${origin}: ${formatBytes(blockMap.mappedBytes)} of ${formatBytes(blockMap.imageSize)} hold data and will be written`)

      const {flashImage} = await import('../../image/flash.js')
      const {FlashProgressView} = await import('../../cli/flash-progress.js')
      const view = FlashProgressView.for(this.output)
      const abort = new AbortController()
      const onInterrupt = () => abort.abort()
      process.once('SIGINT', onInterrupt)
      let result
      try {
        result = await flashImage({source, target, blockMap, verify: flags.verify, signal: abort.signal, onProgress: (progress) => view.update(progress)})
      } finally {
        view.done()
        process.off('SIGINT', onInterrupt)
      }

      if (result.directIoUnavailable) this.output.warn(`${result.directIoUnavailable}: wrote through the page cache`)
      const summary = {
        type: 'result',
        image: args.image,
        drive: target.path,
        image_size: result.imageSize,
        bytes_written: result.bytesWritten,
        sparse: result.sparse,
        verified: result.verified,
        direct_io: result.directIo,
        write_seconds: result.writeMs / 1000,
        verify_seconds: result.verifyMs / 1000,
      }
      if (this.output.json) this.output.printJsonLine(summary)
      else {
        const seconds = (result.writeMs + result.verifyMs) / 1000
        this.output.success(`flashed ${args.image} to ${target.path}: ${formatBytes(result.bytesWritten)} written${result.verified ? ' and verified' : ' (not verified)'} in ${seconds.toFixed(1)} s`)
      }
    } finally {
      await source.close()
    }
  }
}
