import {strict as assert} from 'node:assert'
import {cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {Config, loadHelpClass} from '@oclif/core'

import {renderRootHelp, type RootHelpStyle} from '../../../src/cli/root-help.js'
import {PROJECT_ROOT} from '../../helpers/cli.js'

const plain = (width: number): RootHelpStyle => ({width, bold: (text) => text})

/** What oclif itself prints for `flotilla --help` at this width, without colour (the test's stdout is no terminal). */
async function oclifRootHelp(width: number): Promise<string> {
  const config = await Config.load(PROJECT_ROOT)
  const Help = await loadHelpClass(config)
  const help = new Help(config, {maxWidth: width})
  let printed = ''
  const write = process.stdout.write
  process.stdout.write = ((chunk: string) => {
    printed += chunk
    return true
  }) as typeof process.stdout.write
  try {
    await help.showHelp([])
  } finally {
    process.stdout.write = write
  }

  return printed
}

describe('the root help without oclif', function () {
  this.timeout(30_000)
  const env = {HOME: mkdtempSync(path.join(tmpdir(), 'flotilla-home-'))}

  after(() => rmSync(env.HOME, {recursive: true, force: true}))

  it('prints what oclif prints, at every width where it answers, and answers at common widths', async () => {
    for (const width of [40, 50, 60, 64, 65, 66, 70, 72, 76, 79, 80, 81, 100, 120, 160, 200]) {
      const fast = renderRootHelp(PROJECT_ROOT, plain(width), env)
      if (width >= 80) assert.ok(fast, `no fast help at ${width} columns`)
      if (fast !== undefined) assert.equal(fast, await oclifRootHelp(width), `at ${width} columns`)
    }
  })

  it('emphasises section headers as it is told', () => {
    const help = renderRootHelp(PROJECT_ROOT, {width: 80, bold: (text) => `*${text}*`}, env)
    assert.match(help ?? '', /^\*VERSION\*$/m)
    assert.match(help ?? '', /^\*COMMANDS\*$/m)
  })

  describe('leaves to oclif what it cannot render as oclif does', () => {
    let root: string
    beforeEach(() => {
      root = mkdtempSync(path.join(tmpdir(), 'flotilla-root-'))
      for (const file of ['package.json', 'oclif.manifest.json']) cpSync(path.join(PROJECT_ROOT, file), path.join(root, file))
    })
    afterEach(() => rmSync(root, {recursive: true, force: true}))

    function editPackage(edit: (pjson: {version: string; oclif: Record<string, unknown> & {topics: Record<string, {description: string}>}}) => void): void {
      const file = path.join(root, 'package.json')
      const pjson = JSON.parse(readFileSync(file, 'utf8'))
      edit(pjson)
      writeFileSync(file, JSON.stringify(pjson))
    }

    it('answers for an unchanged copy', () => {
      assert.ok(renderRootHelp(root, plain(80), env))
    })

    it('a manifest of another version, a setting it does not know, a single-command CLI, a template, a hook', () => {
      editPackage((pjson) => (pjson.version = '9.9.9'))
      assert.equal(renderRootHelp(root, plain(80), env), undefined)
      editPackage((pjson) => {
        pjson.version = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')).version
        pjson.oclif.state = 'beta'
      })
      assert.equal(renderRootHelp(root, plain(80), env), undefined)
      editPackage((pjson) => {
        delete pjson.oclif.state
        pjson.oclif.commands = {strategy: 'single', target: './dist/flotilla.js'}
      })
      assert.equal(renderRootHelp(root, plain(80), env), undefined)
      editPackage((pjson) => {
        pjson.oclif.commands = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')).oclif.commands
        pjson.oclif.topics.fleet.description = 'fleets of <%= config.bin %>'
      })
      assert.equal(renderRootHelp(root, plain(80), env), undefined)
      editPackage((pjson) => {
        pjson.oclif.topics.fleet.description = 'fleets'
        pjson.oclif.hooks = {init: './dist/hooks/init.js'}
      })
      assert.equal(renderRootHelp(root, plain(80), env), undefined)
    })

    it('a description that would wrap', () => {
      editPackage((pjson) => (pjson.oclif.topics.fleet.description = 'create and manage fleets '.repeat(4).trim()))
      assert.equal(renderRootHelp(root, plain(80), env), undefined)
      assert.ok(renderRootHelp(root, plain(200), env))
    })

    it('a user theme or user plugins, and debug output', () => {
      const home = mkdtempSync(path.join(tmpdir(), 'flotilla-home-'))
      try {
        mkdirSync(path.join(home, '.config', 'flotilla'), {recursive: true})
        writeFileSync(path.join(home, '.config', 'flotilla', 'theme.json'), '{"sectionHeader": "red"}')
        assert.equal(renderRootHelp(root, plain(80), {HOME: home}), undefined)
        mkdirSync(path.join(home, 'data', 'flotilla'), {recursive: true})
        writeFileSync(path.join(home, 'data', 'flotilla', 'package.json'), '{"oclif": {"plugins": []}}')
        assert.equal(renderRootHelp(root, plain(80), {HOME: env.HOME, XDG_DATA_HOME: path.join(home, 'data')}), undefined)
        assert.equal(renderRootHelp(root, plain(80), {...env, DEBUG: '*'}), undefined)
      } finally {
        rmSync(home, {recursive: true, force: true})
      }
    })
  })
})
