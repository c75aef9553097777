import {execFile} from 'node:child_process'
import {promisify} from 'node:util'

import {ExpectedError} from '../errors.js'
import type {Drive} from './drives.js'

/** Unmounts every mounted partition of a drive (deepest mount points first), so that nothing writes to it meanwhile. */
export async function unmountDrive(drive: Drive): Promise<string[]> {
  const mountpoints = drive.mountpoints.filter((point) => point.startsWith('/')).sort((a, b) => b.length - a.length)
  for (const mountpoint of mountpoints) {
    try {
      await promisify(execFile)('umount', [mountpoint])
    } catch (error) {
      const detail = ((error as {stderr?: string}).stderr ?? (error as Error).message).trim().split('\n')[0]
      throw new ExpectedError(`cannot unmount ${mountpoint} of ${drive.path} (${detail}) — close the programs using it and try again`)
    }
  }

  return mountpoints
}
