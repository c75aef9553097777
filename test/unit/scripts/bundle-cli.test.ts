import {strict as assert} from 'node:assert'
import {readFileSync} from 'node:fs'
import path from 'node:path'

import {PROJECT_ROOT} from '../../helpers/cli.js'

interface Manifest {
  commands: Record<string, {id: string; aliases: string[]; hiddenAliases?: string[]}>
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

  it('bundles oclif without its localeCompare sort', () => {
    const bundle = readFileSync(path.join(PROJECT_ROOT, 'dist', 'flotilla.js'), 'utf8')
    assert.ok(bundle.includes('.sort((a,b)=>a.id<b.id?-1:a.id>b.id?1:0)'))
    assert.ok(!bundle.includes('localeCompare'))
  })
})
