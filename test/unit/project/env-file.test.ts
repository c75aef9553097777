import {strict as assert} from 'node:assert'
import {mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {ExpectedError} from '../../../src/errors.js'
import {parseEnvFile, readEnvFile} from '../../../src/project/env-file.js'
import {folderFiles} from '../../../src/project/files.js'

function parse(text: string, shell: Record<string, string> = {}): Record<string, string> {
  return parseEnvFile(text, {fileName: 'app.env', lookup: (name) => shell[name]})
}

describe('env files (.env and env_file:)', () => {
  it('reads KEY=VALUE lines, skipping blank lines and comments, later lines winning', () => {
    assert.deepEqual(parse('# settings\n\nA=1\nB=two words\n  # indented comment\nA=3\n'), {A: '3', B: 'two words'})
  })

  it('trims unquoted values and drops an inline " #" comment, but keeps # inside a value', () => {
    assert.deepEqual(parse('A =  spaced  \nB=value # comment\nC=abc#def\nD=\n'), {A: 'spaced', B: 'value', C: 'abc#def', D: ''})
  })

  it('accepts export, CRLF line ends and "=" inside values', () => {
    assert.deepEqual(parse('export A=1\r\nURL=postgres://u:p@h/db?ssl=true\r\n'), {A: '1', URL: 'postgres://u:p@h/db?ssl=true'})
  })

  it('keeps single-quoted values literal and reads escapes in double-quoted ones', () => {
    assert.deepEqual(parse(`A='it is $HOME # not a comment'\nB="line1\\nline2 \\"quoted\\" \\\\ \\$HOME"\nC="x" # comment\n`), {
      A: 'it is $HOME # not a comment',
      B: 'line1\nline2 "quoted" \\ $HOME',
      C: 'x',
    })
  })

  it('lets a quoted value span lines', () => {
    assert.deepEqual(parse('KEY="-----BEGIN-----\nabc\n-----END-----"\nNEXT=1\n'), {KEY: '-----BEGIN-----\nabc\n-----END-----', NEXT: '1'})
  })

  it('substitutes ${VAR} in unquoted and double-quoted values from earlier lines, then the shell', () => {
    assert.deepEqual(parse('HOST=db\nURL=http://${HOST}:${PORT:-5432}/$USER\nQ="${HOST}"\n', {USER: 'me'}), {
      HOST: 'db',
      URL: 'http://db:5432/me',
      Q: 'db',
    })
  })

  it('takes a bare KEY from the shell, and leaves it out when the shell has none', () => {
    assert.deepEqual(parse('FROM_SHELL\nNOT_SET\n', {FROM_SHELL: 'yes'}), {FROM_SHELL: 'yes'})
  })

  it('refuses a bad name or an unclosed quote, naming the file and line', () => {
    assert.throws(() => parse('A=1\nnot valid=2\n'), (error: Error) => error instanceof ExpectedError && error.message.startsWith('app.env:2: "not valid"'))
    assert.throws(() => parse('A="open\nB=2\n'), (error: Error) => error instanceof ExpectedError && /app\.env:1: .*A.*never closed/.test(error.message))
    assert.throws(() => parse("A='x' trailing\n"), /app\.env:1: the value of A has "trailing"/)
  })

  describe('readEnvFile', () => {
    let folder: string
    beforeEach(async () => {
      folder = await mkdtemp(path.join(tmpdir(), 'flotilla-env-'))
    })
    afterEach(async () => {
      await rm(folder, {recursive: true, force: true})
    })

    it('reads a file, treats a missing optional one as empty and a missing required one as an error', async () => {
      await writeFile(path.join(folder, 'a.env'), 'A=1\n')
      assert.deepEqual(await readEnvFile(folderFiles(folder), 'a.env', {fileName: 'a.env', required: true}), {A: '1'})
      assert.deepEqual(await readEnvFile(folderFiles(folder), '.env', {fileName: '.env', required: false}), {})
      await assert.rejects(
        readEnvFile(folderFiles(folder), 'missing.env', {fileName: 'env_file "missing.env"', required: true}),
        (error: Error) => error instanceof ExpectedError && error.message.includes('env_file "missing.env" does not exist'),
      )
    })
  })
})
