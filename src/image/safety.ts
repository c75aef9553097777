import type {Drive} from './drives.js'
import {formatBytes} from './format.js'

/** What is known about the machine when deciding whether a drive may be erased. */
export interface DriveSafetyContext {
  /** Size of the image to write, when known. */
  imageSize?: number
  /** `major:minor` of the device holding the image file. */
  imageDevice?: string
  /** The image file's real path (a loop device may be backed by it). */
  imagePath?: string
  /** Swap device paths (partitions or drives). */
  swapDevices: string[]
  /** `--allow-system-drive`: the user has said a non-removable drive may be erased. */
  allowSystemDrive: boolean
}

export interface DriveVerdict {
  /** Reasons the drive must not be written, whatever the flags. */
  refusals: string[]
  /** Things the user has to agree to. */
  warnings: string[]
}

const SYSTEM_MOUNTPOINTS = new Set(['/', '/boot', '/boot/efi', '/usr', '/var', '/home'])

export function describeDrive(drive: Drive): string {
  const name = [drive.vendor, drive.model].filter(Boolean).join(' ') || (drive.type === 'loop' ? 'loop device' : 'unknown model')
  return `${drive.path} (${name}, ${formatBytes(drive.size)})`
}

/** Decides whether a drive may be flashed. Pure, so that every rule is tested with plain objects. */
export function checkDrive(drive: Drive, context: DriveSafetyContext): DriveVerdict {
  const refusals: string[] = []
  const warnings: string[] = []
  const systemMount = drive.mountpoints.find((point) => SYSTEM_MOUNTPOINTS.has(point))
  if (systemMount) refusals.push(`${drive.path} holds ${systemMount}: it is this computer's system drive`)
  const swap = [drive.path, ...drive.partitions.map((partition) => partition.path)].find((device) => context.swapDevices.includes(device)) ?? (drive.mountpoints.includes('[SWAP]') ? drive.path : undefined)
  if (swap) refusals.push(`${drive.path} holds swap space (${swap})`)
  if (context.imageDevice && drive.devices.includes(context.imageDevice)) refusals.push(`${drive.path} holds the image being flashed`)
  if (context.imagePath && drive.backingFile === context.imagePath) refusals.push(`${drive.path} is backed by the image being flashed`)
  if (drive.readOnly) refusals.push(`${drive.path} is read-only (is the card's lock switch on?)`)
  if (context.imageSize !== undefined && drive.size < context.imageSize) {
    refusals.push(`${drive.path} is too small: it holds ${formatBytes(drive.size)} (${drive.size} bytes), the image needs ${formatBytes(context.imageSize)} (${context.imageSize} bytes)`)
  }

  if (!drive.removable) {
    const message = `${describeDrive(drive)} is not a removable drive — it may be a disk of this computer`
    if (context.allowSystemDrive) warnings.push(message)
    else refusals.push(`${message}; add --allow-system-drive (with --yes) if you really mean to erase it`)
  }

  return {refusals, warnings}
}
