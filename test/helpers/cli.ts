import {spawn} from 'node:child_process'
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
/** The real CLI as users run it: the built `bin/run.js` (`npm test` builds first). */
export const CLI_BIN = path.join(PROJECT_ROOT, 'bin', 'run.js')

export interface CliResult {
  stdout: string
  stderr: string
  exitCode: number
}

export interface CliOptions {
  env?: NodeJS.ProcessEnv
  input?: string | Buffer
  cwd?: string
  timeoutMs?: number
  /** Another installed copy's bin/run.js (default {@link CLI_BIN}, this checkout's). */
  bin?: string
}

/** A home of its own for a CLI user, so tests never read or write the developer's credentials. */
export function makeCliHome(): string {
  return mkdtempSync(path.join(tmpdir(), 'flotilla-home-'))
}

/** Runs the real CLI binary with no terminal attached, as CI would. */
export async function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [options.bin ?? CLI_BIN, ...args], {
      cwd: options.cwd ?? PROJECT_ROOT,
      env: {PATH: process.env.PATH, NO_COLOR: '1', ...options.env},
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`flotilla ${args.join(' ')} did not finish in ${options.timeoutMs ?? 30_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`))
    }, options.timeoutMs ?? 30_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({stdout, stderr, exitCode: code ?? (signal === 'SIGINT' ? 130 : 1)})
    })
    child.stdin.end(options.input ?? '')
  })
}
