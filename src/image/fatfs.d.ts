/** The part of fatfs (a FAT12/16/32 file system over a sector driver) that flotilla uses; it ships no types. */
declare module 'fatfs' {
  import type {EventEmitter} from 'node:events'

  export interface SectorDriver {
    sectorSize: number
    numSectors: number
    readSectors(sector: number, destination: Buffer, callback: (error: Error | null) => void): void
    writeSectors: ((sector: number, data: Buffer, callback: (error: Error | null) => void) => void) | null
  }

  type Callback<T> = (error: (Error & {code?: string}) | null, result: T) => void

  export interface FatFileSystem extends EventEmitter {
    readFile(path: string, callback: Callback<Buffer>): void
    writeFile(path: string, data: Buffer | string, options: {flag: string}, callback: (error: (Error & {code?: string}) | null) => void): void
    mkdir(path: string, callback: (error: (Error & {code?: string}) | null) => void): void
    readdir(path: string, callback: Callback<string[]>): void
  }

  export function createFileSystem(driver: SectorDriver, options?: {ro?: boolean; noatime?: boolean}): FatFileSystem
}
