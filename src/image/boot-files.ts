import type {FileHandle} from 'node:fs/promises'

import {ExpectedError, NotFoundError} from '../errors.js'
import {findBootPartition, type BootPartition, type Partition} from './boot-partition.js'
import {describeDiskTarget, openDiskTarget} from './disk.js'
import {findDrive} from './drives.js'
import {syncFatCopies} from './fat-consistency.js'

/** A file to put on the boot partition, by its path there (`config.json`, `system-connections/resin-wifi`). */
export interface BootFile {
  path: string
  content: string | Buffer
}

const SECTOR_SIZE = 512

/** The boot partition as a small promise-based file system, over fatfs. */
export interface FatVolume {
  readFile(path: string): Promise<Buffer>
  writeFile(path: string, content: string | Buffer): Promise<void>
  mkdir(path: string): Promise<void>
  readdir(path: string): Promise<string[]>
}

function isMissing(error: unknown): boolean {
  const code = (error as {code?: string}).code
  return code === 'ENOENT' || code === 'NOENT'
}

function promised<T>(call: (callback: (error: Error | null, result: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => call((error, result) => (error ? reject(error) : resolve(result))))
}

/** Mounts the FAT file system of one partition, in this process, through sector reads and writes on the handle. */
export async function openFatVolume(handle: FileHandle, partition: Partition, writable: boolean): Promise<FatVolume> {
  const fatfs = await import('fatfs')
  const position = (sector: number) => partition.offset + sector * SECTOR_SIZE
  const fs = fatfs.createFileSystem(
    {
      sectorSize: SECTOR_SIZE,
      numSectors: Math.floor(partition.size / SECTOR_SIZE),
      readSectors: (sector, destination, callback) => {
        handle.read(destination, 0, destination.length, position(sector)).then(() => callback(null), callback)
      },
      writeSectors: writable
        ? (sector, data, callback) => {
            handle.write(data, 0, data.length, position(sector)).then(() => callback(null), callback)
          }
        : null,
    },
    {ro: !writable, noatime: true},
  )
  await new Promise<void>((resolve, reject) => {
    fs.once('ready', resolve)
    fs.once('error', (error: Error) => reject(new ExpectedError(`the boot partition is not a readable FAT file system (${error.message})`)))
  })
  return {
    readFile: (path) => promised((callback) => fs.readFile(path, callback)),
    writeFile: async (path, content) => {
      const data = Buffer.isBuffer(content) ? content : Buffer.from(content)
      const existing = await promised<Buffer>((callback) => fs.readFile(path, callback)).catch((error: unknown) => {
        if (isMissing(error)) return undefined
        throw error
      })
      // fatfs marks the clusters it frees when truncating with a bad value (0x0FFFFF00 instead of 0), which mtools and
      // Linux read as a broken chain. So a file is never shrunk: shorter text is padded with trailing newlines (valid in
      // JSON and in NetworkManager keyfiles) and written over the old one in place.
      const padded = existing && existing.length > data.length ? Buffer.concat([data, Buffer.alloc(existing.length - data.length, 0x0a)]) : data
      await promised<void>((callback) => fs.writeFile(path, padded, {flag: existing ? 'r+' : 'w'}, (error) => callback(error, undefined)))
    },
    mkdir: (path) => promised<void>((callback) => fs.mkdir(path, (error) => callback(error, undefined))),
    readdir: (path) => promised((callback) => fs.readdir(path, callback)),
  }
}

async function hasDeviceTypeJson(handle: FileHandle, partition: Partition): Promise<boolean> {
  try {
    const volume = await openFatVolume(handle, partition, false)
    await volume.readFile('/device-type.json')
    return true
  } catch {
    return false
  }
}

/** Runs `fn` with the boot partition of a disk image or a flashed drive. */
async function withBootPartition<T>(target: string, writable: boolean, fn: (volume: FatVolume, partition: BootPartition) => Promise<T>): Promise<T> {
  const described = await describeDiskTarget(target)
  if (writable && described.isBlockDevice) {
    // Writing under a mounted FAT file system would be undone, or worse, by the kernel's cached copy of it.
    const drive = await findDrive(described.path)
    const mounted = drive?.mountpoints.filter((point) => point.startsWith('/')) ?? []
    if (mounted.length > 0) throw new ExpectedError(`${target} has mounted partitions (${mounted.join(', ')}) — unmount them first`)
  }

  const handle = await openDiskTarget(described, writable)
  try {
    const partition = await findBootPartition(handle, (candidate) => hasDeviceTypeJson(handle, candidate))
    const result = await fn(await openFatVolume(handle, partition, writable), partition).catch((error: unknown) => {
      if (error instanceof ExpectedError) throw error
      throw new ExpectedError(`the FAT file system of partition ${partition.index} of ${target} is damaged (${(error as Error).message}) — flash the image again`, {cause: error})
    })
    if (writable) {
      await syncFatCopies(handle, partition)
      await handle.sync()
    }

    return result
  } finally {
    await handle.close()
  }
}

/** Reads one file from the boot partition; NotFoundError when it is not there. */
export async function readBootFile(target: string, filePath: string): Promise<Buffer> {
  return withBootPartition(target, false, async (volume) => {
    try {
      return await volume.readFile(`/${filePath}`)
    } catch (error) {
      if (isMissing(error)) throw new NotFoundError('file', filePath, `the boot partition of ${target} has no such file`)
      throw error
    }
  })
}

async function ensureDirectory(volume: FatVolume, directory: string): Promise<void> {
  let current = ''
  for (const part of directory.split('/')) {
    current += `/${part}`
    try {
      await volume.readdir(current)
    } catch (error) {
      if (!isMissing(error)) throw error
      await volume.mkdir(current)
    }
  }
}

/** Writes files onto the boot partition, replacing any of the same name; returns the partition used. */
export async function writeBootFiles(target: string, files: BootFile[]): Promise<BootPartition> {
  for (const file of files) {
    if (file.path.split('/').some((part) => part === '..' || part === '.' || part === '')) throw new ExpectedError(`invalid boot partition path "${file.path}"`)
  }

  return withBootPartition(target, true, async (volume, partition) => {
    for (const file of files) {
      const directory = file.path.split('/').slice(0, -1).join('/')
      if (directory) await ensureDirectory(volume, directory)
      await volume.writeFile(`/${file.path}`, file.content)
    }

    return partition
  })
}
