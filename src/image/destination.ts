import {realpath, stat} from 'node:fs/promises'
import path from 'node:path'

import {ExpectedError} from '../errors.js'
import {deviceNumberOf, findDrive, listDrives, swapDevices, type Drive} from './drives.js'
import {checkDrive, type DriveSafetyContext, type DriveVerdict} from './safety.js'

/**
 * A drive comes with what its safety rules need to know of this machine; the image's size is added by `checkDrive`'s
 * caller, so that the drive can be examined while the image is still being read.
 */
export type FlashDestination = {kind: 'drive'; drive: Drive; safety: DriveSafetyContext} | {kind: 'file'; path: string; exists: boolean}

export interface DestinationOptions {
  imagePath: string
  imageSize?: number
  allowSystemDrive: boolean
}

async function safetyContext(options: DestinationOptions): Promise<DriveSafetyContext> {
  const [imageDevice, imagePath, swaps] = await Promise.all([deviceNumberOf(options.imagePath), realpath(options.imagePath), swapDevices()])
  return {imageSize: options.imageSize, imageDevice, imagePath, swapDevices: swaps, allowSystemDrive: options.allowSystemDrive}
}

/** The drives a picker may offer: those no rule refuses. */
export async function eligibleDrives(options: DestinationOptions): Promise<Array<{drive: Drive; verdict: DriveVerdict}>> {
  const [context, drives] = await Promise.all([safetyContext(options), listDrives()])
  return drives.map((drive) => ({drive, verdict: checkDrive(drive, context)})).filter(({verdict}) => verdict.refusals.length === 0)
}

/** What `--drive` names: a whole drive (with what its safety rules need) or a regular file to write the image into. */
export async function resolveDestination(target: string, options: Omit<DestinationOptions, 'imageSize'>): Promise<FlashDestination> {
  const resolved = path.resolve(target)
  // lsblk is the longest wait: for a device path it starts at once, while the path is examined.
  const listing = resolved.startsWith('/dev/') ? listDrives() : undefined
  listing?.catch(() => {})
  const info = await stat(resolved).catch(() => undefined)
  if (!info || info.isFile()) {
    if (!info) {
      const parent = await stat(path.dirname(resolved)).catch(() => undefined)
      if (!parent?.isDirectory()) throw new ExpectedError(`${target} does not exist and its folder does not either — give a drive such as /dev/sdb (see "flotilla util available-drives") or a file path`)
    } else if ((await realpath(resolved)) === (await realpath(options.imagePath))) {
      throw new ExpectedError(`${target} is the image itself — give another destination`)
    }

    return {kind: 'file', path: resolved, exists: Boolean(info)}
  }

  if (!info.isBlockDevice()) throw new ExpectedError(`${target} is neither a drive nor a regular file`)
  const [drives, real, safety] = await Promise.all([listing ?? listDrives(), realpath(resolved), safetyContext(options)])
  const drive = await findDrive(resolved, drives)
  if (!drive) throw new ExpectedError(`${target} is not a drive lsblk knows — see "flotilla util available-drives"`)
  if (drive.path !== real) throw new ExpectedError(`${target} is a partition of ${drive.path} — give the whole drive`)
  return {kind: 'drive', drive, safety}
}
