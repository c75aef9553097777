#!/usr/bin/env node
// `--version` and the root help are answered before oclif loads: they are the most frequent probes people and
// scripts make, and startup is a feature. Anything else, and a help that src/cli/root-help.ts cannot render
// exactly as oclif would, goes to oclif.
const args = process.argv.slice(2)
const rootHelp = args.length === 0 || (args.length === 1 && ['--help', '-h', 'help'].includes(args[0]))
if (args.length === 1 && (args[0] === '--version' || args[0] === '-v')) {
  const {readFileSync} = await import('node:fs')
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`flotilla/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else if (!(rootHelp && (await printRootHelp()))) {
  // Loading @oclif/core checks that this Node satisfies oclif's own engines range (>=18) with semver, which costs
  // milliseconds of every command's start-up; package.json already asks for a newer Node than oclif does.
  // The variable is set for that check only, so that the processes commands start see the environment as it was.
  const skipEngineCheck = !('OCLIF_DISABLE_ENGINE_WARNING' in process.env)
  if (skipEngineCheck) process.env.OCLIF_DISABLE_ENGINE_WARNING = 'true'
  // The bundle (scripts/bundle-cli.mjs) carries its own @oclif/core: commands must run under that one.
  const {execute} = await import('../dist/flotilla.js')
  if (skipEngineCheck) delete process.env.OCLIF_DISABLE_ENGINE_WARNING
  await execute({dir: import.meta.url})
}

async function printRootHelp() {
  const {fileURLToPath} = await import('node:url')
  const {renderRootHelp, rootHelpStyle} = await import('../dist/cli/root-help.js').catch(() => ({}))
  if (!renderRootHelp) return false
  const help = renderRootHelp(fileURLToPath(new URL('..', import.meta.url)), rootHelpStyle())
  if (help === undefined) return false
  // Written as oclif writes it: console.log ignores a reader that went away (`flotilla --help | head -3`).
  console.log(help.slice(0, -1))
  return true
}

