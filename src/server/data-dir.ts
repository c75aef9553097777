import {chmodSync, closeSync, lstatSync, mkdirSync, openSync, readdirSync} from 'node:fs'
import path from 'node:path'

/**
 * Makes the server's data dir private: the folder 0700 and every file directly in it 0600 (the database holds
 * password hashes and session secrets; beside it are the signing secret and the SSH host key). Folders and files
 * from older starts are tightened too, and `file`, when given, is created 0600 before anything writes to it.
 */
export function securePrivateDir(dir: string, file?: string): void {
  mkdirSync(dir, {recursive: true, mode: 0o700})
  chmodSync(dir, 0o700)
  if (file) closeSync(openSync(path.join(dir, file), 'a', 0o600))
  for (const name of readdirSync(dir)) {
    const entry = path.join(dir, name)
    if (lstatSync(entry).isFile()) chmodSync(entry, 0o600)
  }
}
