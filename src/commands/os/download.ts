import {existsSync} from 'node:fs'
import path from 'node:path'

import {Args, Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {canPrompt} from '../../cli/prompts.js'
import {UsageError} from '../../errors.js'

export default class OsDownload extends FlotillaCommand {
  static override summary = 'Download an OS image for a device type'
  static override description =
    'Streams the image to <output>.part, resumes an interrupted download with an HTTP Range request (also when run again), ' +
    'checks the whole file against the sha-256 the server publishes, and only then gives it the final name. ' +
    'When the server has a block map for the version it is saved beside the image as <output>.bmap, so that "os flash" writes only the blocks that hold data. ' +
    'A file name ending in .gz or .zip asks for that form of the image; anything else gets the raw image.'

  static override examples = [
    '<%= config.bin %> os download raspberrypi4-64 --output balena.img',
    '<%= config.bin %> os download raspberrypi4-64 --version 5.1.20+rev1 --output balena.img',
    '<%= config.bin %> os download raspberrypi4-64 --version latest --output balena.img.gz --json',
  ]

  static override args = {'device-type': Args.string({required: true, description: 'device type slug (see "flotilla device-type list")'})}
  static override flags = {
    output: Flags.string({char: 'o', required: true, description: 'where to write the image'}),
    version: Flags.string({description: 'OS version (as "flotilla os versions" lists it), or "latest"', default: 'latest'}),
    force: Flags.boolean({char: 'f', description: 'replace the output file if it exists (on a terminal you are asked instead)'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(OsDownload)
    const {downloadOsImage} = await import('../../sdk/os-images.js')
    const {FlashProgressView} = await import('../../cli/flash-progress.js')
    const {formatBytes} = await import('../../image/format.js')
    const output = path.resolve(flags.output)
    if (!flags.force && existsSync(output) && !(await this.confirmReplace(flags.output))) return
    const view = FlashProgressView.for(this.output)
    const abort = new AbortController()
    const onInterrupt = () => abort.abort()
    process.once('SIGINT', onInterrupt)
    process.once('SIGTERM', onInterrupt)
    let result
    try {
      result = await downloadOsImage(await this.sdk(), {
        deviceType: args['device-type'],
        version: flags.version,
        output,
        signal: abort.signal,
        onProgress: (progress) => view.update(progress),
        onRetry: (error, bytes) => {
          view.done()
          if (this.output.json) this.output.printJsonLine({type: 'retry', bytes, error: error.message})
          else this.output.warn(`connection lost after ${formatBytes(bytes)} (${error.message}): resuming`)
        },
        onWarning: (message) => {
          view.done()
          this.output.warn(message)
        },
      })
    } finally {
      view.done()
      process.off('SIGINT', onInterrupt)
      process.off('SIGTERM', onInterrupt)
    }

    if (this.output.json) this.output.printJsonLine({type: 'result', ...result})
    else {
      const resumed = result.resumed_from > 0 ? `, resumed from ${formatBytes(result.resumed_from)}` : ''
      const checked = result.verified ? 'sha-256 checked' : 'the server published no checksum'
      const blockMap = result.bmap ? `, block map in ${path.basename(result.bmap)}` : ''
      this.output.success(`downloaded ${args['device-type']} ${result.version} to ${flags.output} (${formatBytes(result.size)}${resumed}; ${checked}${blockMap})`)
    }
  }

  /** An existing file is replaced only when the user says so: --force, or yes on a terminal. */
  private async confirmReplace(file: string): Promise<boolean> {
    if (!canPrompt() || this.output.json) throw new UsageError(`${file} already exists — add --force to replace it`)
    const {confirm} = await import('@inquirer/prompts')
    return confirm({message: `${file} already exists. Replace it?`, default: false})
  }
}
