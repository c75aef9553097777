import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {canPrompt, confirmDestructive, promptChoice} from '../../cli/prompts.js'
import {ExpectedError, InterruptedError, UsageError} from '../../errors.js'
import type {BlockMapPlan} from '../../image/block-map-plan.js'
import type {DestinationOptions, FlashDestination} from '../../image/destination.js'
import type {FlashResult} from '../../image/flash.js'
import {formatBytes} from '../../image/format.js'
import type {ImageSource} from '../../image/sources.js'

const MISSING_DRIVE = 'missing --drive (no terminal to ask on) — see "flotilla util available-drives", and add --yes to confirm'

/** The image, opened, and which of its ranges to write; closed again when planning fails. */
async function examineImage(imagePath: string): Promise<{source: ImageSource; plan: BlockMapPlan}> {
  const [{openImageSource}, {planBlockMap}] = await Promise.all([import('../../image/sources.js'), import('../../image/block-map-plan.js')])
  const source = await openImageSource(imagePath)
  try {
    return {source, plan: await planBlockMap(source)}
  } catch (error) {
    await source.close()
    throw error
  }
}

async function examineDestination(drive: string, options: Omit<DestinationOptions, 'imageSize'>): Promise<FlashDestination> {
  const {resolveDestination} = await import('../../image/destination.js')
  return resolveDestination(drive, options)
}

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
    if (!flags.drive && !canPrompt()) throw new UsageError(MISSING_DRIVE)
    const destinationOptions = {imagePath: args.image, allowSystemDrive: flags['allow-system-drive']}
    // The drive (lsblk, the longest wait), the image and the writer with its native hasher are examined and loaded side
    // by side, each starting as soon as its own code is loaded: nothing is written before every check has passed, but
    // no check waits for another it does not need.
    const named = flags.drive ? examineDestination(flags.drive, destinationOptions) : undefined
    const examined = examineImage(args.image)
    const writer = Promise.all([import('../../image/flash.js'), import('../../cli/flash-progress.js'), import('../../image/unmount.js')])
    writer.catch(() => {})
    // The image's failure is reported first, as when the two were examined one after the other.
    const [image, given] = await Promise.allSettled([examined, named])
    if (image.status === 'rejected') throw image.reason
    const {source, plan} = image.value
    try {
      if (given.status === 'rejected') throw given.reason
      const {checkDrive, describeDrive} = await import('../../image/safety.js')
      const imageSize = plan.map?.imageSize ?? source.size
      const destination = given.value ?? (await examineDestination(await this.pickDrive({...destinationOptions, imageSize}), destinationOptions))
      let target
      if (destination.kind === 'drive') {
        const {drive, safety} = destination
        const verdict = checkDrive(drive, {...safety, imageSize})
        if (verdict.refusals.length > 0) throw new ExpectedError(`refusing to flash ${drive.path}: ${verdict.refusals.join('; ')}`)
        for (const warning of verdict.warnings) this.output.warn(warning)
        if (!(await confirmDestructive(`erase ${describeDrive(drive)} and write ${args.image} to it?`, flags.yes))) throw new InterruptedError('nothing written')
        const [, , {unmountDrive}] = await writer
        const unmounted = await unmountDrive(drive)
        if (unmounted.length > 0) this.output.info(`unmounted ${unmounted.join(', ')}`)
        target = {path: drive.path, isBlockDevice: true, size: drive.size, sectorSize: drive.logicalSectorSize}
      } else {
        if (destination.exists && !(await confirmDestructive(`overwrite ${destination.path}?`, flags.yes))) throw new InterruptedError('nothing written')
        target = {path: destination.path, isBlockDevice: false}
      }

      const blockMap = plan.map
      if (blockMap && !this.output.json) this.output.info(`using ${plan.origin}: ${formatBytes(plan.dataBytes!)} of ${formatBytes(blockMap.imageSize)} hold data and will be written`)
      const [{flashImage}, {FlashProgressView}] = await writer
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

      this.report(args.image, target.path, result, plan.dataBytes)
    } finally {
      await source.close()
    }
  }

  /** The drive to erase, chosen on the terminal among those no rule refuses. */
  private async pickDrive(options: DestinationOptions): Promise<string> {
    const [{eligibleDrives}, {describeDrive}] = await Promise.all([import('../../image/destination.js'), import('../../image/safety.js')])
    const choices = await eligibleDrives(options)
    if (choices.length === 0) throw new ExpectedError('no drive can be flashed: plug in an SD card or USB drive (see "flotilla util available-drives")')
    return promptChoice('Drive to erase', choices.map(({drive}) => ({name: describeDrive(drive), value: drive.path})), 'drive')
  }

  /**
   * The figures of a flash. The size is the image's; "of data" is what its block map (or its file systems) say holds
   * data, the same for an image and its compressed forms. JSON adds the bytes actually written, which for a raw image
   * include its boot partition whole.
   */
  private report(image: string, drive: string, result: FlashResult, dataBytes: number | undefined): void {
    if (result.directIoUnavailable) this.output.warn(`${result.directIoUnavailable}: wrote through the page cache`)
    const summary = {
      type: 'result',
      image,
      drive,
      image_size: result.imageSize,
      data_bytes: dataBytes ?? result.imageSize,
      bytes_written: result.bytesWritten,
      sparse: result.sparse,
      verified: result.verified,
      direct_io: result.directIo,
      write_seconds: result.writeMs / 1000,
      verify_seconds: result.verifyMs / 1000,
    }
    if (this.output.json) return this.output.printJsonLine(summary)
    const seconds = (result.writeMs + result.verifyMs) / 1000
    const data = dataBytes === undefined ? '' : ` holding ${formatBytes(dataBytes)} of data`
    this.output.success(`flashed ${image} to ${drive}: ${formatBytes(result.imageSize)} image${data}, ${result.verified ? 'written and verified' : 'written (not verified)'} in ${seconds.toFixed(1)} s`)
  }
}
