/**
 * `flotilla --help` (and `flotilla` alone) without loading @oclif/core: the root help, rendered from the oclif
 * manifest exactly as oclif's Help class renders it. Loading oclif costs more than everything else a help needs,
 * and `--help` is the first thing people run.
 *
 * This renders only what it can render identically: whenever oclif could print anything else (a plugin, a theme,
 * a hook, a text that would wrap or that holds a template, a stale manifest, WSL, Windows), it answers undefined
 * and bin/run.js hands over to oclif. test/unit/cli/root-help.test.ts compares both at many widths.
 */
import {existsSync, readFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {arch, homedir, release} from 'node:os'
import path from 'node:path'

import {rootExamplesBody} from './root-examples.js'

interface ManifestCommand {
  id: string
  summary?: string
  description?: string
  hidden?: boolean
  aliases?: string[]
  hiddenAliases?: string[]
}

interface Topic {
  name: string
  description?: string
  hidden?: boolean
}

interface OclifSection {
  bin?: string
  dirname?: string
  commands?: unknown
  topicSeparator?: string
  topics?: Record<string, {description?: string; hidden?: boolean; subtopics?: unknown}>
  hooks?: Record<string, unknown>
  description?: string
  [key: string]: unknown
}

interface PackageJson {
  name: string
  version: string
  description?: string
  helpOptions?: unknown
  oclif: OclifSection
}

export interface RootHelpStyle {
  /** The width oclif wraps to: `OCLIF_COLUMNS`, else the terminal's, else 80. */
  width: number
  /** Whether oclif would print section headers in bold. */
  bold: (text: string) => string
}

/** The settings of package.json's oclif section this renderer knows to have no effect on the root help. */
const UNDERSTOOD_SETTINGS = new Set(['bin', 'dirname', 'commands', 'topicSeparator', 'topics', 'hooks', 'description', 'helpClass', 'additionalHelpFlags'])
/** The help class whose root help this renders: oclif's, with the examples of root-examples.ts (src/cli/help.ts). */
const FLOTILLA_HELP_CLASS = JSON.stringify({target: './dist/flotilla.js', identifier: 'FlotillaHelp'})
/** Printable ASCII words separated by single spaces: text that wrap-ansi leaves as it is when it fits. */
const PLAIN_TEXT = /^[\x21-\x7E]+(?: [\x21-\x7E]+)*$/

function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T
  } catch {
    return undefined
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function isWsl(): boolean {
  if (process.platform !== 'linux') return false
  if (/microsoft/i.test(release())) return true
  try {
    return /microsoft/i.test(readFileSync('/proc/version', 'utf8'))
  } catch {
    return false
  }
}

/** The reasons oclif's own start-up could print something else: user plugins, a user theme, debug output. */
function oclifEnvironmentIsPlain(pjson: PackageJson, env: NodeJS.ProcessEnv): boolean {
  if (env.DEBUG || env.OCLIF_NEXT_VERSION || process.platform === 'win32' || isWsl()) return false
  const scope = (name: string) => env[`${pjson.oclif.bin ?? pjson.name}_${name}`.replaceAll('-', '_').toUpperCase()]
  if (scope('DEBUG') || scope('CONFIG_DIR') || scope('DATA_DIR')) return false
  const home = env.HOME || homedir()
  const dirname = pjson.oclif.dirname ?? pjson.name
  const configDir = path.join(env.XDG_CONFIG_HOME || path.join(home, '.config'), dirname)
  const dataDir = path.join(env.XDG_DATA_HOME || path.join(home, '.local/share'), dirname)
  return !existsSync(path.join(configDir, 'theme.json')) && !existsSync(path.join(dataDir, 'package.json'))
}

/** oclif's `renderList` for rows that need no wrapping; undefined when one would wrap. */
function renderList(rows: Array<[string, string | undefined]>, width: number): string | undefined {
  const maxLength = Math.max(...rows.map(([left]) => left.length))
  const lines: string[] = []
  for (const [left, right] of rows) {
    if (!PLAIN_TEXT.test(left)) return undefined
    if (!right) {
      lines.push(left)
      continue
    }

    const text = right.trim()
    if (!PLAIN_TEXT.test(text) || text.length > width - (2 + maxLength + 2)) return undefined
    lines.push(left + ' '.repeat(maxLength - left.length + 2) + text)
  }

  return lines.join('\n').trim()
}

function section(header: string, body: string, style: RootHelpStyle): string {
  return `${style.bold(header)}\n${body.replaceAll(/^(?!\s*$)/gm, '  ')}`
}

/** Command discovery whose commands the manifest lists as oclif reads them: by file pattern, or the bundle's explicit map. */
function listsCommandsInManifest(commands: unknown): boolean {
  if (typeof commands === 'string') return true
  const discovery = commands as {strategy?: unknown} | undefined
  return discovery?.strategy === 'explicit' || discovery?.strategy === 'pattern'
}

/**
 * The root help oclif would print for the CLI at `root`, or undefined when this renderer cannot promise to print
 * exactly that.
 */
export function renderRootHelp(root: string, style: RootHelpStyle, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const pjson = readJson<PackageJson>(path.join(root, 'package.json'))
  const manifest = readJson<{version: string; commands: Record<string, ManifestCommand>}>(path.join(root, 'oclif.manifest.json'))
  if (!pjson?.oclif || !manifest?.commands || manifest.version.split('-')[0] !== pjson.version.split('-')[0]) return undefined
  const {oclif} = pjson
  if (Object.keys(oclif).some((key) => !UNDERSTOOD_SETTINGS.has(key)) || pjson.helpOptions !== undefined || !listsCommandsInManifest(oclif.commands)) return undefined
  if (Object.keys(oclif.hooks ?? {}).some((event) => event !== 'command_not_found')) return undefined
  if (oclif.helpClass !== undefined && JSON.stringify(oclif.helpClass) !== FLOTILLA_HELP_CLASS) return undefined
  if (!oclifEnvironmentIsPlain(pjson, env)) return undefined

  const separator = oclif.topicSeparator === ' ' ? ' ' : ':'
  const bin = oclif.bin ?? pjson.name
  const render = (text: string | undefined): string | undefined => (text?.includes('<%') ? undefined : text)

  // Config.loadCommands: every command, then its aliases as commands of their own (hidden ones hidden).
  const commands = new Map<string, ManifestCommand>()
  for (const command of Object.values(manifest.commands)) {
    if (commands.has(command.id)) return undefined
    commands.set(command.id, command)
    for (const [aliases, hidden] of [
      [command.aliases ?? [], false],
      [command.hiddenAliases ?? [], true],
    ] as const) {
      for (const alias of aliases) {
        const id = alias.replaceAll(separator, ':')
        if (commands.has(id)) return undefined
        commands.set(id, {...command, hidden, id})
      }
    }
  }

  // Config.loadTopics: the declared topics, then every prefix of a visible command's id.
  const topics = new Map<string, Topic>()
  for (const [name, topic] of Object.entries(oclif.topics ?? {})) {
    if (topic.subtopics !== undefined || /[: ]/.test(name)) return undefined
    topics.set(name, {name, description: topic.description, hidden: topic.hidden})
  }

  for (const command of Object.values(manifest.commands).filter((command) => !command.hidden)) {
    const parts = command.id.split(':')
    while (parts.length > 0) {
      const name = parts.join(':')
      if (name && !topics.has(name)) topics.set(name, {name, description: command.summary || command.description})
      parts.pop()
    }
  }

  // Help.showRootHelp: the topics that have children, and the commands, of the first level.
  const allTopics = [...topics.values()]
  const rootTopics = allTopics
    .filter((topic) => allTopics.some((other) => other.name.includes(`${topic.name}:`)))
    .filter((topic) => !topic.hidden && !topic.name.includes(':'))
    .sort((a, b) => compare(a.name, b.name))
  const rootCommands = [...commands.values()]
    .filter((command) => !command.hidden && command.id && !command.id.includes(':'))
    .sort((a, b) => compare(a.id, b.id))

  const description = render(oclif.description || pjson.description || '')
  if (description === undefined || description.includes('\n')) return undefined
  const userAgent = `${pjson.name}/${pjson.version} ${process.platform}-${arch() === 'ia32' ? 'x86' : arch()} node-${process.version}`
  const usage = `$ ${bin} [COMMAND]`
  if (!PLAIN_TEXT.test(userAgent) || userAgent.length > style.width - 2 || !PLAIN_TEXT.test(usage) || usage.length > style.width - 2) return undefined
  const sections = [description, section('VERSION', userAgent, style), section('USAGE', usage, style)]
  if (oclif.helpClass !== undefined) sections.push(section('EXAMPLES', rootExamplesBody(bin), style))
  const head = sections.filter(Boolean).join('\n\n')
  let output = `${head}\n\n`

  if (rootTopics.length > 0) {
    const rows: Array<[string, string | undefined]> = []
    for (const topic of rootTopics) {
      const summary = topic.description && render(topic.description.split('\n')[0])
      if (summary === undefined) return undefined
      rows.push([topic.name, summary])
    }

    const list = renderList(rows, style.width)
    if (list === undefined) return undefined
    output += `${section('TOPICS', list, style)}\n\n`
  }

  if (rootCommands.length > 0) {
    const rows: Array<[string, string | undefined]> = []
    for (const command of rootCommands) {
      const summary = command.summary ? render(command.summary.split('\n')[0]) : command.description && render(command.description)?.split('\n')[0]
      if (summary === undefined || summary.includes('\u001B')) return undefined
      rows.push([command.id, summary])
    }

    const list = renderList(rows, style.width)
    if (list === undefined) return undefined
    output += `${section('COMMANDS', list, style)}\n\n`
  }

  return output
}

/** The width and emphasis oclif would use on this process's terminal (screen.ts, ux/theme.ts). */
export function rootHelpStyle(env: NodeJS.ProcessEnv = process.env): RootHelpStyle {
  const stdout = process.stdout
  let width = Number.parseInt(env.OCLIF_COLUMNS ?? '', 10)
  if (!width) {
    const columns = stdout.isTTY ? stdout.getWindowSize()[0] : 80
    width = columns < 1 ? 80 : Math.max(columns, 40)
  }

  // Without a terminal and without FORCE_COLOR, supports-color (and so oclif) prints no colour. Otherwise ask
  // the very modules oclif asks, resolved from where oclif resolves them.
  if (!stdout.isTTY && !('FORCE_COLOR' in env)) return {width, bold: (text) => text}
  const oclifRequire = createRequire(createRequire(import.meta.url).resolve('@oclif/core'))
  const supportsColor = oclifRequire('supports-color') as {stdout: unknown; stderr: unknown}
  const ansis = oclifRequire('ansis') as {bold: (text: string) => string}
  return {width, bold: supportsColor.stdout && supportsColor.stderr ? (text) => ansis.bold(text) : (text) => text}
}
