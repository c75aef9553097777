import {strict as assert} from 'node:assert'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {ExpectedError} from '../../../src/errors.js'
import {parseComposition, resolveComposeFile} from '../../../src/project/compose.js'
import {describeProject} from '../../../src/project/detect.js'

const target = {deviceType: 'raspberrypi4-64', arch: 'aarch64'}

describe('a compose file resolved as docker compose reads it (variables, .env, env_file)', () => {
  let folder: string

  async function files(entries: Record<string, string>): Promise<void> {
    for (const [name, content] of Object.entries(entries)) {
      await mkdir(path.dirname(path.join(folder, name)), {recursive: true})
      await writeFile(path.join(folder, name), content)
    }
  }

  beforeEach(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'flotilla-compose-'))
  })
  afterEach(async () => {
    await rm(folder, {recursive: true, force: true})
  })

  it('substitutes from the shell over .env, warns once for an unset variable, and keeps $$ literal', async () => {
    await files({
      '.env': 'TAG=from-dotenv\nPORT=1000\n',
      'docker-compose.yml': [
        'services:',
        '  main:',
        '    image: "app:${TAG}"',
        '    ports: ["${PORT}:80"]',
        '    labels: {price: "$$5", a: "${UNSET}", b: "$UNSET"}',
        '',
      ].join('\n'),
    })
    const {composition, warnings, changed} = await resolveComposeFile(folder, 'docker-compose.yml', {environment: {PORT: '2000'}})
    assert.equal(composition.services.main.image, 'app:from-dotenv')
    assert.deepEqual(composition.services.main.ports, ['2000:80'])
    assert.deepEqual(composition.services.main.labels, {price: '$5', a: '', b: ''})
    assert.deepEqual(warnings, ['The "UNSET" variable is not set. Defaulting to a blank string.'])
    assert.equal(changed, true)
  })

  it('merges env_file (a name, a list, or {path, required}) under environment, which wins, and drops the key', async () => {
    await files({
      'common.env': '# shared\nLEVEL=info\nNAME=common\n',
      'config/api.env': 'NAME=api\nSECRET="s3cr3t"\n',
      'docker-compose.yml': [
        'services:',
        '  api:',
        '    image: api',
        '    env_file: [common.env, config/api.env, {path: optional.env, required: false}]',
        '    environment: [LEVEL=debug]',
        '  worker:',
        '    image: worker',
        '    env_file: common.env',
        '',
      ].join('\n'),
    })
    const {composition, changed} = await resolveComposeFile(folder, 'docker-compose.yml')
    assert.deepEqual(composition.services.api.environment, {LEVEL: 'debug', NAME: 'api', SECRET: 's3cr3t'})
    assert.deepEqual(composition.services.worker.environment, {LEVEL: 'info', NAME: 'common'})
    assert.equal('env_file' in composition.services.api, false)
    assert.equal(changed, true)
  })

  it('reads env_file paths after substitution, and only inside the project unless allowed', async () => {
    await files({'prod.env': 'A=1\n', 'docker-compose.yml': 'services:\n  main:\n    image: x\n    env_file: ${STAGE}.env\n'})
    const {composition} = await resolveComposeFile(folder, 'docker-compose.yml', {environment: {STAGE: 'prod'}})
    assert.deepEqual(composition.services.main.environment, {A: '1'})
    await files({'docker-compose.yml': 'services:\n  main:\n    image: x\n    env_file: ../outside.env\n'})
    await assert.rejects(resolveComposeFile(folder, 'docker-compose.yml'), /env_file "\.\.\/outside\.env" is outside the project folder/)
  })

  it('fails with the missing env_file and with a required variable, naming them', async () => {
    await files({'docker-compose.yml': 'services:\n  main:\n    image: x\n    env_file: missing.env\n'})
    await assert.rejects(resolveComposeFile(folder, 'docker-compose.yml'), (error: Error) => error instanceof ExpectedError && /env_file "missing\.env" of service "main" does not exist/.test(error.message))
    await files({'docker-compose.yml': 'services:\n  main:\n    image: ${IMAGE:?name the image to run}\n'})
    await assert.rejects(
      resolveComposeFile(folder, 'docker-compose.yml'),
      (error: Error) => error instanceof ExpectedError && error.message.includes('services.main.image: required variable IMAGE is not set: name the image to run'),
    )
  })

  it("reads only the project's .env when no environment is given, as the builder does: its own environment never leaks", async () => {
    process.env.FLOTILLA_TEST_BUILDER_SECRET = 'server secret'
    try {
      await files({'.env': 'FROM_DOTENV=1\n', 'docker-compose.yml': 'services:\n  main:\n    image: x\n    environment: ["A=$FROM_DOTENV", "B=${FLOTILLA_TEST_BUILDER_SECRET:-none}"]\n'})
      const {composition, warnings} = await resolveComposeFile(folder, 'docker-compose.yml')
      assert.deepEqual(composition.services.main.environment, {A: '1', B: 'none'})
      assert.deepEqual(warnings, [])
    } finally {
      delete process.env.FLOTILLA_TEST_BUILDER_SECRET
    }
  })

  it('leaves a compose file without $ or env_file unchanged, so the original is sent', async () => {
    await files({'docker-compose.yml': 'services:\n  main:\n    image: x\n'})
    assert.equal((await resolveComposeFile(folder, 'docker-compose.yml')).changed, false)
    const project = await describeProject(folder, target)
    assert.equal(project.resolvedComposeText, undefined)
    assert.deepEqual(project.warnings, [])
  })

  it('gives describeProject the resolved build context, and a resolved text that reads back to the same composition', async () => {
    await files({
      'services/api/Dockerfile': 'FROM busybox\n',
      'api.env': 'GREETING=hello $$USER\n',
      'docker-compose.yml': [
        'services:',
        '  api:',
        '    build: ./services/${SERVICE:-api}',
        '    env_file: api.env',
        '    environment: {COST: "$$5", FROM_SHELL: "${WHO}"}',
        '',
      ].join('\n'),
    })
    const project = await describeProject(folder, {...target, environment: {WHO: 'me'}})
    assert.deepEqual(project.services.map((service) => service.type === 'build' && service.context), ['services/api'])
    assert.deepEqual(project.composition.services.api.environment, {GREETING: 'hello $USER', COST: '$5', FROM_SHELL: 'me'})
    assert.ok(project.resolvedComposeText)
    // The builder reads the resolved text again, substitution included: it must mean the same thing.
    await files({'docker-compose.yml': project.resolvedComposeText, 'api.env': 'GREETING=changed\n'})
    const rebuilt = await resolveComposeFile(folder, 'docker-compose.yml', {environment: {WHO: 'someone else'}})
    assert.deepEqual(rebuilt.composition, project.composition)
    assert.deepEqual(rebuilt.composition, parseComposition(project.resolvedComposeText.replaceAll('$$', '$'), 'docker-compose.yml'))
  })
})
