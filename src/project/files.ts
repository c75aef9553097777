import {readFile, stat} from 'node:fs/promises'
import path from 'node:path'

import {ExpectedError} from '../errors.js'

/**
 * The files of a project as the code that reads a project sees them: a folder on the developer's disk, or a
 * project uploaded to the builder, which is never unpacked onto the server's disk. Paths are POSIX and relative
 * to the project (`.` is the project itself).
 */
export interface ProjectFiles {
  /** How messages name the project: its folder, or what was uploaded. */
  readonly label: string
  /** Whether a path is a file or a folder (links followed), or undefined when there is nothing there. */
  kind(relativePath: string): Promise<'file' | 'directory' | undefined>
  /** The text of a file, or undefined when there is none; a file that exists but cannot be read throws an ExpectedError. */
  readText(relativePath: string): Promise<string | undefined>
  /** How messages name one file of the project. */
  describe(relativePath: string): string
}

/** The files of a folder on disk. Paths may climb out of it or be absolute: the caller decides whether that is allowed. */
export function folderFiles(folder: string): ProjectFiles {
  return {
    label: folder,
    async kind(relativePath) {
      const stats = await stat(path.resolve(folder, relativePath)).catch(() => undefined)
      if (stats?.isFile()) return 'file'
      return stats?.isDirectory() ? 'directory' : undefined
    },
    async readText(relativePath) {
      const file = path.resolve(folder, relativePath)
      try {
        return await readFile(file, 'utf8')
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
        throw new ExpectedError(`cannot read ${file}: ${(error as Error).message}`, {cause: error})
      }
    },
    describe: (relativePath) => path.resolve(folder, relativePath),
  }
}

/** A folder's files, or the given files as they are. */
export function projectFiles(project: string | ProjectFiles): ProjectFiles {
  return typeof project === 'string' ? folderFiles(project) : project
}
