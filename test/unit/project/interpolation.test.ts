import {strict as assert} from 'node:assert'

import {ExpectedError} from '../../../src/errors.js'
import {escapeDollars, interpolateDocument, interpolateString} from '../../../src/project/interpolation.js'

const variables: Record<string, string> = {NAME: 'flotilla', EMPTY: '', PORT: '8080', NESTED: 'inner'}

function substitute(text: string, unset: string[] = []): string {
  return interpolateString(text, {lookup: (name) => variables[name], onUnset: (name) => unset.push(name), where: 'docker-compose.yml: services.main.image'})
}

function failsWith(text: string, ...fragments: string[]): void {
  assert.throws(
    () => substitute(text),
    (error: Error) => {
      assert.ok(error instanceof ExpectedError, `not an ExpectedError: ${error.stack}`)
      for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" does not mention "${fragment}"`)
      return true
    },
  )
}

describe('compose variable substitution', () => {
  it('substitutes $NAME and ${NAME} anywhere in a value', () => {
    assert.equal(substitute('$NAME'), 'flotilla')
    assert.equal(substitute('${NAME}'), 'flotilla')
    assert.equal(substitute('registry/${NAME}:v$PORT-x'), 'registry/flotilla:v8080-x')
    assert.equal(substitute('$NAME.local'), 'flotilla.local', 'a name ends where a name character ends')
    assert.equal(substitute('no variables here'), 'no variables here')
  })

  it('turns $$ into a literal $, also before a name', () => {
    assert.equal(substitute('$$'), '$')
    assert.equal(substitute('$$NAME costs $$5'), '$NAME costs $5')
    assert.equal(substitute('$$$NAME'), '$flotilla')
  })

  it('uses ${NAME:-default} when the variable is unset or empty, ${NAME-default} only when unset', () => {
    assert.equal(substitute('${MISSING:-fallback}'), 'fallback')
    assert.equal(substitute('${EMPTY:-fallback}'), 'fallback')
    assert.equal(substitute('${PORT:-1}'), '8080')
    assert.equal(substitute('${MISSING-fallback}'), 'fallback')
    assert.equal(substitute('${EMPTY-fallback}'), '')
    assert.equal(substitute('${PORT-1}'), '8080')
    assert.equal(substitute('${MISSING:-}'), '')
  })

  it('substitutes inside a default, nested braces included', () => {
    assert.equal(substitute('${MISSING:-${NESTED}}'), 'inner')
    assert.equal(substitute('${MISSING:-${ALSO_MISSING:-deep}/x}'), 'deep/x')
    assert.equal(substitute('${MISSING:-$$literal}'), '$literal')
  })

  it('replaces with ${NAME:+other} when set (and non-empty for :+)', () => {
    assert.equal(substitute('${PORT:+--port=$PORT}'), '--port=8080')
    assert.equal(substitute('${EMPTY:+x}'), '')
    assert.equal(substitute('${EMPTY+x}'), 'x')
    assert.equal(substitute('${MISSING+x}'), '')
  })

  it('fails on ${NAME:?error} when unset or empty, and ${NAME?error} when unset, naming the variable and the place', () => {
    assert.equal(substitute('${PORT:?needed}'), '8080')
    assert.equal(substitute('${EMPTY?needed}'), '')
    failsWith('${MISSING:?set MISSING to the API key}', 'MISSING', 'not set', 'set MISSING to the API key', 'services.main.image')
    failsWith('${EMPTY:?must not be empty}', 'EMPTY', 'is empty', 'must not be empty')
    failsWith('${MISSING?}', 'required variable MISSING is not set')
  })

  it('makes an unset variable without a default empty, and reports it', () => {
    const unset: string[] = []
    assert.equal(substitute('a${MISSING}b$ALSO', unset), 'ab')
    assert.deepEqual(unset, ['MISSING', 'ALSO'])
  })

  it('refuses what compose refuses: a lone $, a bad name, an unknown operator, an unclosed brace', () => {
    failsWith('costs $5', '"$" at character 7', '$$')
    failsWith('ends with $', 'invalid interpolation')
    failsWith('${}', 'does not start with a variable name')
    failsWith('${1ABC}', 'does not start with a variable name')
    failsWith('${NAME:x}', '":" after the name')
    failsWith('${NAME', 'never closed')
  })

  it('substitutes every string value of a document, not its keys, and keeps other scalars', () => {
    const unset: string[] = []
    const document = {
      services: {main: {image: '${NAME}', ports: ['${PORT}:80'], environment: {$KEY: '$NAME'}, privileged: true, cpu_shares: 512, command: null}},
    }
    const result = interpolateDocument(document, 'docker-compose.yml', (name) => variables[name], (name) => unset.push(name))
    assert.deepEqual(result, {
      services: {main: {image: 'flotilla', ports: ['8080:80'], environment: {$KEY: 'flotilla'}, privileged: true, cpu_shares: 512, command: null}},
    })
    assert.deepEqual(document.services.main.image, '${NAME}', 'the input is left as it was')
  })

  it('names the value\'s path in a document error', () => {
    assert.throws(
      () => interpolateDocument({services: {api: {environment: ['TOKEN=${TOKEN:?required}']}}}, 'docker-compose.yml', () => undefined),
      /docker-compose\.yml: services\.api\.environment\[0\]: required variable TOKEN is not set: required/,
    )
  })

  it('escapes $ so that substituting the escaped document gives it back', () => {
    const document = {a: 'cost: $5 and ${NOT_A_VAR}', b: ['$$'], c: 3}
    const escaped = escapeDollars(document)
    assert.deepEqual(escaped, {a: 'cost: $$5 and $${NOT_A_VAR}', b: ['$$$$'], c: 3})
    assert.deepEqual(interpolateDocument(escaped, 'f', () => 'WRONG'), document)
  })
})
