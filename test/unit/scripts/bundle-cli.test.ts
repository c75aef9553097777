import {strict as assert} from 'node:assert'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {PROJECT_ROOT} from '../../helpers/cli.js'

interface Manifest {
  commands: Record<string, {id: string; aliases: string[]; hiddenAliases?: string[]}>
}

const DIST = path.join(PROJECT_ROOT, 'dist')
/** Packages no command may load before it runs: each costs tens of milliseconds, or more, of every start-up. */
const HEAVY_PACKAGES = ['dockerode', 'ssh2', 'fastify', 'better-sqlite3', 'kysely', 'node-pty', 'got', 'tar-stream', 'xz-decompress', 'unbzip2-stream', 'yauzl', 'fatfs']

/** Every file of the bundle that loading dist/flotilla.js loads (its static imports, followed), and the packages they import. */
function loadedAtStartup(): {files: string[]; packages: Set<string>} {
  const files = ['flotilla.js']
  const packages = new Set<string>()
  for (let index = 0; index < files.length; index++) {
    const text = readFileSync(path.join(DIST, files[index]), 'utf8')
    // Static imports only: `import(` is a lazy load, and esbuild writes `from"x"` and `import"x"` for static ones.
    for (const [, specifier] of text.matchAll(/(?:\bfrom|\bimport)\s*"([^"]+)"/g)) {
      if (specifier.startsWith('./')) {
        const file = path.posix.join(path.posix.dirname(files[index]), specifier)
        if (!files.includes(file)) files.push(file)
      } else if (!specifier.startsWith('node:')) {
        packages.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0])
      }
    }
  }

  return {files, packages}
}

/** What scripts/bundle-cli.mjs relies on when it sorts oclif's commands without ICU; the build made dist/ and the manifest. */
describe('scripts/bundle-cli.mjs', () => {
  const manifest = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'oclif.manifest.json'), 'utf8')) as Manifest

  it('sorts every command id and alias as localeCompare would', () => {
    const ids = Object.values(manifest.commands).flatMap((command) => [command.id, ...command.aliases, ...(command.hiddenAliases ?? [])])
    const byLocale = [...ids].sort((a, b) => a.localeCompare(b))
    const byCodeUnit = [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    assert.deepEqual(byCodeUnit, byLocale)
  })

  it('loads no heavy package, and none of the server or the agent, before a command runs', () => {
    const {files, packages} = loadedAtStartup()
    assert.ok(files.length > 1, 'the bundle shares chunks with the lazy imports')
    assert.deepEqual(HEAVY_PACKAGES.filter((name) => packages.has(name)), [])
    const sources = files.flatMap((file) => (JSON.parse(readFileSync(path.join(DIST, `${file}.map`), 'utf8')) as {sources: string[]}).sources)
    assert.ok(sources.some((source) => source.includes('src/commands/fleet/list.ts')))
    assert.deepEqual(sources.filter((source) => /src\/(server|agent)\//.test(source)), [])
  })

  it('bundles oclif without its localeCompare sort', () => {
    const bundle = readFileSync(path.join(PROJECT_ROOT, 'dist', 'flotilla.js'), 'utf8')
    assert.ok(bundle.includes('.sort((a,b)=>a.id<b.id?-1:a.id>b.id?1:0)'))
    assert.ok(!bundle.includes('localeCompare'))
  })
})
