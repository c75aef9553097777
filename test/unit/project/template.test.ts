import {strict as assert} from 'node:assert'

import {ExpectedError} from '../../../src/errors.js'
import {resolveDockerfileTemplate} from '../../../src/project/template.js'

const target = {deviceType: 'raspberrypi4-64', arch: 'aarch64'}

describe('resolveDockerfileTemplate', () => {
  for (const [placeholder, expected] of [
    ['%%BALENA_MACHINE_NAME%%', 'raspberrypi4-64'],
    ['%%RESIN_MACHINE_NAME%%', 'raspberrypi4-64'],
    ['%%BALENA_ARCH%%', 'aarch64'],
    ['%%RESIN_ARCH%%', 'aarch64'],
  ]) {
    it(`replaces ${placeholder}`, () => {
      assert.equal(resolveDockerfileTemplate(`FROM balenalib/${placeholder}-debian\n`, target), `FROM balenalib/${expected}-debian\n`)
    })
  }

  it('replaces every occurrence, several on one line, and leaves the rest of the text alone', () => {
    const text = 'FROM base-%%BALENA_ARCH%%\r\nRUN echo %%BALENA_MACHINE_NAME%% %%RESIN_ARCH%% 100%% sure\nCMD ["run"]'
    assert.equal(resolveDockerfileTemplate(text, target), 'FROM base-aarch64\r\nRUN echo raspberrypi4-64 aarch64 100%% sure\nCMD ["run"]')
  })

  it('leaves comment lines as written, as balena does', () => {
    const text = '# built for %%BALENA_MACHINE_NAME%% and %%UNKNOWN_THING%%\nFROM base-%%BALENA_ARCH%%'
    assert.equal(resolveDockerfileTemplate(text, target), '# built for %%BALENA_MACHINE_NAME%% and %%UNKNOWN_THING%%\nFROM base-aarch64')
  })

  it('refuses an unknown variable, naming it and its line', () => {
    assert.throws(
      () => resolveDockerfileTemplate('FROM base\nRUN echo %%BALENA_APP_NAME%%\n', target),
      (error: Error) => error instanceof ExpectedError && error.message.includes('%%BALENA_APP_NAME%%') && error.message.includes('line 2'),
    )
  })
})
