import {execFile} from 'node:child_process'
import {readFile, realpath, stat} from 'node:fs/promises'
import path from 'node:path'
import {promisify} from 'node:util'

import {ExpectedError} from '../errors.js'

/** A whole drive as `util available-drives` lists it and the flasher checks it. */
export interface Drive {
  path: string
  name: string
  size: number
  model: string | null
  vendor: string | null
  transport: string | null
  removable: boolean
  readOnly: boolean
  type: string
  /** The drive's mount points and its partitions' ("[SWAP]" for swap). */
  mountpoints: string[]
  /** `major:minor` of the drive and of each partition. */
  devices: string[]
  partitions: Array<{path: string; mountpoints: string[]}>
  logicalSectorSize: number
  /** For loop devices: the file behind it. */
  backingFile?: string
}

interface LsblkDevice {
  name: string
  path: string
  size: number | string | null
  model?: string | null
  vendor?: string | null
  tran?: string | null
  rm: boolean | string
  hotplug?: boolean | string
  ro: boolean | string
  type: string
  mountpoints?: Array<string | null>
  mountpoint?: string | null
  'maj:min': string
  'log-sec'?: number | string | null
  children?: LsblkDevice[]
}

export const LSBLK_COLUMNS = 'NAME,PATH,SIZE,MODEL,VENDOR,TRAN,RM,HOTPLUG,RO,TYPE,MOUNTPOINTS,MAJ:MIN,LOG-SEC'

const truthy = (value: boolean | string | undefined) => value === true || value === '1'

function mountpointsOf(device: LsblkDevice): string[] {
  const points = device.mountpoints ?? (device.mountpoint === undefined ? [] : [device.mountpoint])
  return points.filter((point): point is string => typeof point === 'string' && point !== '')
}

function descendants(device: LsblkDevice): LsblkDevice[] {
  return (device.children ?? []).flatMap((child) => [child, ...descendants(child)])
}

/** The whole drives in `lsblk --json --bytes` output: disks and attached loop devices, not RAM disks. */
export function parseLsblk(json: string): Drive[] {
  const parsed = JSON.parse(json) as {blockdevices?: LsblkDevice[]}
  return (parsed.blockdevices ?? [])
    .filter((device) => (device.type === 'disk' || device.type === 'loop') && !/^(zram|ram)\d/.test(device.name) && Number(device.size) > 0)
    .map((device) => {
      const children = descendants(device)
      return {
        path: device.path,
        name: device.name,
        size: Number(device.size),
        model: device.model?.trim() || null,
        vendor: device.vendor?.trim() || null,
        transport: device.tran ?? null,
        removable: truthy(device.rm) || truthy(device.hotplug),
        readOnly: truthy(device.ro),
        type: device.type,
        mountpoints: [device, ...children].flatMap(mountpointsOf),
        devices: [device, ...children].map((entry) => entry['maj:min']),
        partitions: children.map((child) => ({path: child.path, mountpoints: mountpointsOf(child)})),
        logicalSectorSize: Number(device['log-sec'] ?? 512) || 512,
      }
    })
}

async function backingFileOf(drive: Drive): Promise<string | undefined> {
  if (drive.type !== 'loop') return undefined
  try {
    return (await readFile(`/sys/block/${drive.name}/loop/backing_file`, 'utf8')).trim()
  } catch {
    return undefined
  }
}

export async function listDrives(): Promise<Drive[]> {
  let stdout: string
  try {
    ;({stdout} = await promisify(execFile)('lsblk', ['--json', '--bytes', '--output', LSBLK_COLUMNS], {maxBuffer: 16 * 1024 * 1024}))
  } catch (error) {
    throw new ExpectedError(`cannot list drives with lsblk (${(error as Error).message}) — is util-linux installed?`)
  }

  const drives = parseLsblk(stdout)
  await Promise.all(drives.map(async (drive) => (drive.backingFile = await backingFileOf(drive))))
  return drives
}

/** The drive a device path names: the drive itself, or the drive a partition belongs to. */
export async function findDrive(devicePath: string, drives?: Drive[]): Promise<Drive | undefined> {
  const resolved = await realpath(devicePath).catch(() => path.resolve(devicePath))
  const all = drives ?? (await listDrives())
  return all.find((drive) => drive.path === resolved) ?? all.find((drive) => drive.partitions.some((partition) => partition.path === resolved))
}

/** `major:minor` of the device holding a file, as lsblk shows it. */
export async function deviceNumberOf(file: string): Promise<string> {
  const info = await stat(file, {bigint: true})
  const major = ((info.dev >> 8n) & 0xfffn) | ((info.dev >> 32n) & ~0xfffn)
  const minor = (info.dev & 0xffn) | ((info.dev >> 12n) & ~0xffn)
  return `${major}:${minor}`
}

/** Swap devices from /proc/swaps, resolved to device paths. */
export async function swapDevices(): Promise<string[]> {
  try {
    const lines = (await readFile('/proc/swaps', 'utf8')).split('\n').slice(1)
    return lines.map((line) => line.split(/\s+/)[0]).filter((name) => name.startsWith('/dev/'))
  } catch {
    return []
  }
}
