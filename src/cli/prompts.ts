import {UsageError} from '../errors.js'

/** Prompts only when a person is there to answer: stdin and stdout both terminals. */
export function canPrompt(): boolean {
  return Boolean(process.stdin.isTTY && process.stdout.isTTY) && !process.env.CI
}

/** Asks before a destructive action; without a terminal the action needs `--yes`. */
export async function confirmDestructive(message: string, yes: boolean): Promise<boolean> {
  if (yes) return true
  if (!canPrompt()) throw new UsageError(`${message.replace(/\?$/, '')}: add --yes to confirm when not running interactively`)
  const {confirm} = await import('@inquirer/prompts')
  return confirm({message, default: false})
}

export async function promptText(message: string, options: {secret?: boolean; flagName: string}): Promise<string> {
  if (!canPrompt()) throw new UsageError(`missing --${options.flagName} (no terminal to ask on)`)
  const prompts = await import('@inquirer/prompts')
  return options.secret ? prompts.password({message, mask: '*'}) : prompts.input({message})
}

export async function promptChoice<T extends string>(message: string, choices: Array<{name: string; value: T}>, flagName: string): Promise<T> {
  if (!canPrompt()) throw new UsageError(`missing --${flagName} (no terminal to ask on)`)
  const {select} = await import('@inquirer/prompts')
  return select({message, choices})
}

/** Reads all of stdin, for secrets passed as `--token -` or `--password-stdin`. */
export async function readStdin(): Promise<string> {
  return (await stdinText()).trim()
}

async function stdinText(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}

/** A password piped in for `--password-stdin` (one trailing newline dropped); `usage` shows the pipe in the error. */
export async function readPasswordFromPipe(usage: string): Promise<string> {
  if (process.stdin.isTTY) throw new UsageError(`--password-stdin reads the password from a pipe: printf "%s" "$PASSWORD" | ${usage}`)
  const password = (await stdinText()).replace(/\r?\n$/, '')
  if (password === '') throw new UsageError('no password arrived on stdin')
  return password
}
