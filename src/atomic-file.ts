import {chmod, mkdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'

/** Writes to a temporary file beside the target and renames it over, so a crash never leaves half a file behind. */
export async function writeFileAtomic(file: string, content: string | Uint8Array, mode = 0o644): Promise<void> {
  await mkdir(path.dirname(file), {recursive: true})
  const temporary = `${file}.${process.pid}.${Date.now()}.tmp`
  try {
    await writeFile(temporary, content, {mode})
    await chmod(temporary, mode)
    await rename(temporary, file)
  } catch (error) {
    await rm(temporary, {force: true})
    throw error
  }
}

/** A text file's content, or undefined when there is no such file (or no file was named). */
export async function readTextIfPresent(file: string | undefined): Promise<string | undefined> {
  if (!file) return undefined
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}
