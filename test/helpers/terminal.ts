import {type ChildProcess, spawn} from 'node:child_process'

import {CLI_BIN, PROJECT_ROOT} from './cli.js'

/**
 * The real CLI on a pseudo-terminal (util-linux `script`), for the paths that only run when a person is there:
 * prompts, confirmations, colours. The test waits for what the program prints and types the answers.
 */
export class TerminalSession {
  output = ''
  readonly exited: Promise<number | null>
  private readonly child: ChildProcess

  /** `columns`: the terminal's width (stty), for output that fits it. */
  constructor(args: string[], env: NodeJS.ProcessEnv, options: {columns?: number} = {}) {
    const program = [process.execPath, CLI_BIN, ...args].map((word) => `'${word.replaceAll("'", "'\\''")}'`).join(' ')
    const command = options.columns ? `stty cols ${Math.trunc(options.columns)} rows 40; exec ${program}` : program
    this.child = spawn('script', ['--quiet', '--flush', '--return', '--command', command, '/dev/null'], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, TERM: 'xterm', ...env},
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk))
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.output += chunk))
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)))
  }

  /** Resolves once the program has printed text matching the pattern since the session began. */
  async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!pattern.test(this.output)) {
      if (Date.now() > deadline) throw new Error(`the terminal never showed ${pattern}; it showed:\n${this.output}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  type(text: string): void {
    this.child.stdin?.write(text)
  }

  kill(): void {
    this.child.kill('SIGKILL')
  }
}
