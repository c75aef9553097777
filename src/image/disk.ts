import {constants} from 'node:fs'
import {open, readFile, realpath, stat, type FileHandle} from 'node:fs/promises'
import path from 'node:path'

import {ExpectedError, NotFoundError} from '../errors.js'

/** What a path names: a disk image file or a block device, with its size in bytes. */
export interface DiskTarget {
  path: string
  isBlockDevice: boolean
  size: number
}

/** The size of a block device from sysfs: stat() reports 0 for devices. */
export async function blockDeviceSize(devicePath: string): Promise<number> {
  const name = path.basename(await realpath(devicePath))
  const sectors = await readFile(`/sys/class/block/${name}/size`, 'utf8')
  return Number(sectors.trim()) * 512
}

export async function describeDiskTarget(target: string): Promise<DiskTarget> {
  const resolved = path.resolve(target)
  let info
  try {
    info = await stat(resolved)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError('drive or image', target, 'give an image file or a device such as /dev/sdb (see "flotilla util available-drives")')
    throw error
  }

  if (info.isBlockDevice()) return {path: resolved, isBlockDevice: true, size: await blockDeviceSize(resolved)}
  if (info.isFile()) return {path: resolved, isBlockDevice: false, size: info.size}
  throw new ExpectedError(`${target} is neither a disk image file nor a block device`)
}

/** Opens a disk target, turning permission problems into a line that says what to do. */
export async function openDiskTarget(target: DiskTarget, writable: boolean): Promise<FileHandle> {
  try {
    return await open(target.path, writable ? constants.O_RDWR : constants.O_RDONLY)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EACCES' || code === 'EPERM') {
      throw new ExpectedError(`no permission to ${writable ? 'write' : 'read'} ${target.path} — run with sudo or make it ${writable ? 'writable' : 'readable'}`)
    }

    if (code === 'EROFS') throw new ExpectedError(`${target.path} is read-only`)
    throw new ExpectedError(`cannot open ${target.path}: ${(error as Error).message}`, {cause: error})
  }
}
