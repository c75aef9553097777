import {strict as assert} from 'node:assert'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {PROJECT_ROOT} from '../../helpers/cli.js'

const DIST = path.join(PROJECT_ROOT, 'dist')
/** Packages no command may load before it runs: each costs tens of milliseconds, or more, of every start-up. */
const HEAVY_PACKAGES = ['dockerode', 'ssh2', 'fastify', 'libsql', 'kysely', 'pg', '@lydell/node-pty', 'got', 'tar-stream', 'xz-decompress', 'unbzip2-stream', 'yauzl', 'fatfs']

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

/** What scripts/bundle-cli.mjs promises of the bundle the build made: start-up loads only what every command needs. */
describe('scripts/bundle-cli.mjs', () => {
  it('loads no heavy package, and none of the server or the agent, before a command runs', () => {
    const {files, packages} = loadedAtStartup()
    assert.ok(files.length > 1, 'the bundle shares chunks with the lazy imports')
    assert.deepEqual(HEAVY_PACKAGES.filter((name) => packages.has(name)), [])
    const sources = files.flatMap((file) => (JSON.parse(readFileSync(path.join(DIST, `${file}.map`), 'utf8')) as {sources: string[]}).sources)
    assert.ok(sources.some((source) => source.includes('src/commands/fleet/list.ts')))
    assert.deepEqual(sources.filter((source) => /src\/(server|agent)\//.test(source)), [])
  })
})
