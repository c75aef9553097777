#!/usr/bin/env node
// Bundles the CLI for start-up: every command, the libraries they reach and @oclif/core go into dist/flotilla.js,
// and what commands import lazily (the server, the agent, the SDK…) into chunks beside it, each module once.
// Loading a few files instead of some three hundred saves ~25 ms of `fleet list --json` (of ~250); package.json
// points oclif at the bundle's COMMANDS ("explicit" command discovery), so no command file is looked up at run time.
// Minifying whitespace and syntax only: mangled names measured slower to start, and stack traces keep their names.
// Besides oclif, only chalk (which the output layer loads for every command) is bundled; every other dependency
// stays in node_modules: they are loaded lazily, and some are native.
import {readdirSync, readFileSync, rmSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {build} from 'esbuild'

import {bundleDashboard} from './bundle-dashboard.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const source = path.join(root, 'src')
const commandsDir = path.join(source, 'commands')

/** oclif's id of a command file: its path under commands/ with ':' between folders, an index file naming its folder. */
function commandId(file) {
  const parts = path.relative(commandsDir, file).replace(/\.ts$/, '').split(path.sep)
  if (parts.at(-1) === 'index') parts.pop()
  return parts.join(':')
}

function commandFiles(directory) {
  return readdirSync(directory, {withFileTypes: true}).flatMap((entry) => {
    const full = path.join(directory, entry.name)
    if (entry.isDirectory()) return commandFiles(full)
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [full] : []
  })
}

const commands = commandFiles(commandsDir).sort()
const entry = [
  "export {execute} from '@oclif/core'",
  "export {default as commandNotFound} from './hooks/command-not-found.ts'",
  "export {FlotillaHelp} from './cli/help.ts'",
  ...commands.map((file, index) => `import command${index} from './${path.relative(source, file).split(path.sep).join('/')}'`),
  'export const COMMANDS = {',
  ...commands.map((file, index) => `  ${JSON.stringify(commandId(file))}: command${index},`),
  '}',
].join('\n')

const BUNDLED_PACKAGES = new Set(['@oclif/core', 'chalk'])
const pjson = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
const outdir = path.join(root, 'dist')
rmSync(path.join(outdir, 'chunks'), {recursive: true, force: true})
await build({
  stdin: {contents: entry, resolveDir: source, sourcefile: 'flotilla-entry.ts', loader: 'ts'},
  bundle: true,
  splitting: true,
  outdir,
  entryNames: 'flotilla',
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunks/[name]-[hash]',
  external: [...Object.keys(pjson.dependencies).filter((name) => !BUNDLED_PACKAGES.has(name)), 'typescript', 'ts-node'],
  // oclif is CommonJS: its require() calls need a require in the ES module they were bundled into.
  banner: {js: "import {createRequire as flotillaCreateRequire} from 'node:module'; const require = flotillaCreateRequire(import.meta.url);"},
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: true,
  sourcesContent: false,
  logLevel: 'warning',
})

await bundleDashboard(root)
