import {strict as assert} from 'node:assert'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {ExpectedError} from '../../../src/errors.js'
import {describeProject} from '../../../src/project/detect.js'

const target = {deviceType: 'raspberrypi4-64', arch: 'aarch64'}

async function makeFiles(root: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(root, name)), {recursive: true})
    await writeFile(path.join(root, name), content)
  }
}

function expectedError(...fragments: string[]): (error: Error) => boolean {
  return (error) => {
    assert.ok(error instanceof ExpectedError, `not an ExpectedError: ${error.stack}`)
    for (const fragment of fragments) assert.ok(error.message.includes(fragment), `"${error.message}" does not mention "${fragment}"`)
    assert.ok(!error.message.includes('\n'), `"${error.message}" is more than one line`)
    return true
  }
}

describe('describeProject', () => {
  let folder: string
  beforeEach(async () => {
    folder = await mkdtemp(path.join(tmpdir(), 'flotilla-detect-'))
  })
  afterEach(async () => {
    await rm(folder, {recursive: true, force: true})
  })

  describe('a single-Dockerfile project', () => {
    it('is one service named main built from the Dockerfile, with balena\'s default composition', async () => {
      await makeFiles(folder, {Dockerfile: 'FROM busybox\n'})
      const project = await describeProject(folder, target)
      assert.equal(project.composeFile, undefined)
      assert.deepEqual(project.services, [{type: 'build', serviceName: 'main', context: '.', dockerfilePath: 'Dockerfile', dockerfileKind: 'plain', args: {}}])
      assert.deepEqual(Object.keys(project.composition.services), ['main'])
      const main = project.composition.services.main
      assert.deepEqual(main.build, {context: '.'})
      assert.equal(main.privileged, true)
      assert.equal(main.network_mode, 'host')
      assert.deepEqual(main.volumes, ['resin-data:/data'])
      assert.deepEqual(project.composition.volumes, {'resin-data': {}})
      assert.equal(project.composition.version, '2.1')
    })

    for (const [files, chosen, kind] of [
      [['Dockerfile', 'Dockerfile.template', 'Dockerfile.aarch64', 'Dockerfile.raspberrypi4-64'], 'Dockerfile.raspberrypi4-64', 'device-type'],
      [['Dockerfile', 'Dockerfile.template', 'Dockerfile.aarch64', 'Dockerfile.armv7hf'], 'Dockerfile.aarch64', 'arch'],
      [['Dockerfile', 'Dockerfile.template', 'Dockerfile.armv7hf', 'Dockerfile.raspberrypi3'], 'Dockerfile.template', 'template'],
      [['Dockerfile', 'Dockerfile.armv7hf'], 'Dockerfile', 'plain'],
    ] as const) {
      it(`picks ${chosen} from ${files.join(', ')}`, async () => {
        await makeFiles(folder, Object.fromEntries(files.map((name) => [name, `FROM ${name}\n`])))
        const [service] = (await describeProject(folder, target)).services
        assert.equal(service.type, 'build')
        assert.equal(service.type === 'build' && service.dockerfilePath, chosen)
        assert.equal(service.type === 'build' && service.dockerfileKind, kind)
      })
    }

    it('uses a Dockerfile named by the caller, relative to the project folder', async () => {
      await makeFiles(folder, {Dockerfile: 'FROM a\n', 'docker/Dockerfile.dev': 'FROM b\n'})
      const project = await describeProject(folder, {...target, dockerfile: 'docker/Dockerfile.dev'})
      assert.deepEqual(project.services, [{type: 'build', serviceName: 'main', context: '.', dockerfilePath: 'docker/Dockerfile.dev', dockerfileKind: 'plain', args: {}}])
      assert.deepEqual(project.composition.services.main.build, {context: '.', dockerfile: 'docker/Dockerfile.dev'})
    })

    it('refuses a named Dockerfile that is missing or outside the folder', async () => {
      await makeFiles(folder, {Dockerfile: 'FROM a\n'})
      await assert.rejects(describeProject(folder, {...target, dockerfile: 'Dockerfile.prod'}), expectedError('Dockerfile.prod', 'is not a file'))
      await assert.rejects(describeProject(folder, {...target, dockerfile: '../Dockerfile'}), expectedError('../Dockerfile', 'not inside'))
    })

    it('says what to add when the folder has nothing to build', async () => {
      await makeFiles(folder, {'README.md': '# nothing\n', 'Dockerfile.armv7hf': 'FROM x\n'})
      await mkdir(path.join(folder, 'Dockerfile'))
      await assert.rejects(describeProject(folder, target), expectedError(folder, 'nothing to build', 'Dockerfile.template', 'docker-compose.yml'))
    })

    it('says so when the folder does not exist', async () => {
      await assert.rejects(describeProject(path.join(folder, 'missing'), target), expectedError('missing', 'does not exist'))
    })
  })

  describe('a compose project', () => {
    it('has a service for each compose service, each built from its own context, and records image-only services', async () => {
      await makeFiles(folder, {
        'docker-compose.yml': [
          'version: "2.1"',
          'volumes:',
          '  data:',
          'services:',
          '  web:',
          '    build: ./web',
          '    environment:',
          '      - MODE=production',
          '      - EMPTY',
          '    labels:',
          '      io.balena.features.dbus: 1',
          '  worker:',
          '    build:',
          '      context: services/worker',
          '      dockerfile: Dockerfile.worker',
          '      args:',
          '        LEVEL: 3',
          '      target: runtime',
          '    image: my-worker',
          '  templated:',
          '    build: templated',
          '  cache:',
          '    image: redis:7',
          '    x-note: extension keys are allowed',
          'x-common: {}',
        ].join('\n'),
        'web/Dockerfile': 'FROM a\n',
        'web/Dockerfile.raspberrypi4-64': 'FROM b\n',
        'services/worker/Dockerfile.worker': 'FROM c\n',
        'templated/Dockerfile.template': 'FROM d-%%BALENA_ARCH%%\n',
      })
      const project = await describeProject(folder, target)
      assert.equal(project.composeFile, 'docker-compose.yml')
      assert.deepEqual(project.services, [
        {type: 'build', serviceName: 'web', context: 'web', dockerfilePath: 'Dockerfile.raspberrypi4-64', dockerfileKind: 'device-type', args: {}},
        {type: 'build', serviceName: 'worker', context: 'services/worker', dockerfilePath: 'Dockerfile.worker', dockerfileKind: 'plain', args: {LEVEL: '3'}, target: 'runtime'},
        {type: 'build', serviceName: 'templated', context: 'templated', dockerfilePath: 'Dockerfile.template', dockerfileKind: 'template', args: {}},
        {type: 'image', serviceName: 'cache', image: 'redis:7'},
      ])
      const {services, volumes, version} = project.composition
      assert.equal(version, '2.1')
      assert.deepEqual(volumes, {data: {}})
      assert.deepEqual(services.web.build, {context: './web'})
      assert.deepEqual(services.web.environment, {MODE: 'production', EMPTY: ''})
      assert.deepEqual(services.web.labels, {'io.balena.features.dbus': '1'})
      assert.deepEqual(services.worker.build, {context: 'services/worker', dockerfile: 'Dockerfile.worker', args: {LEVEL: '3'}, target: 'runtime'})
      assert.equal(services.worker.image, 'my-worker')
      assert.deepEqual(services.cache, {image: 'redis:7', 'x-note': 'extension keys are allowed'})
    })

    it('reads docker-compose.yaml too', async () => {
      await makeFiles(folder, {'docker-compose.yaml': 'services:\n  main:\n    build: .\n', Dockerfile: 'FROM a\n'})
      const project = await describeProject(folder, target)
      assert.equal(project.composeFile, 'docker-compose.yaml')
      assert.deepEqual(project.services.map((service) => service.serviceName), ['main'])
    })

    const failures: Array<[string, Record<string, string>, string[]]> = [
      ['an unknown top-level key', {'docker-compose.yml': 'services:\n  a:\n    image: x\nservice:\n  b: {}\n'}, ['docker-compose.yml', 'top-level key "service"']],
      ['an unknown service key', {'docker-compose.yml': 'services:\n  web:\n    image: x\n    buidl: .\n'}, ['service "web"', 'unknown key "buidl"']],
      ['an unknown build key', {'docker-compose.yml': 'services:\n  web:\n    build:\n      context: .\n      dockerfil: D\n'}, ['service "web"', 'build key "dockerfil"']],
      ['a build without a context', {'docker-compose.yml': 'services:\n  web:\n    build:\n      dockerfile: Dockerfile\n'}, ['service "web"', 'no build context']],
      ['a build context that does not exist', {'docker-compose.yml': 'services:\n  web:\n    build: ./web\n'}, ['service "web"', 'build context "./web"', 'not a folder']],
      ['a build context outside the project', {'docker-compose.yml': 'services:\n  web:\n    build: ../elsewhere\n'}, ['service "web"', '"../elsewhere"', 'not a folder inside the project']],
      ['a context with no Dockerfile', {'docker-compose.yml': 'services:\n  web:\n    build: web\n', 'web/app.js': ''}, ['service "web"', 'no Dockerfile', '"web"']],
      ['a named dockerfile that is missing', {'docker-compose.yml': 'services:\n  web:\n    build: {context: ., dockerfile: Dockerfile.prod}\n'}, ['service "web"', 'Dockerfile.prod']],
      ['a service with neither build nor image', {'docker-compose.yml': 'services:\n  web:\n    restart: always\n'}, ['service "web"', 'neither "build" nor "image"']],
      ['no services', {'docker-compose.yml': 'version: "2"\n'}, ['docker-compose.yml', 'no services']],
      ['YAML that does not parse', {'docker-compose.yml': 'services:\n  web: [\n'}, ['docker-compose.yml', 'not valid YAML']],
      ['both spellings of the compose file', {'docker-compose.yml': 'services: {a: {image: x}}\n', 'docker-compose.yaml': 'services: {a: {image: x}}\n'}, ['docker-compose.yml and docker-compose.yaml']],
    ]
    for (const [what, files, fragments] of failures) {
      it(`refuses ${what}, saying so in one line`, async () => {
        await makeFiles(folder, files)
        await assert.rejects(describeProject(folder, target), expectedError(...fragments))
      })
    }

    it('refuses a Dockerfile name given for the whole project', async () => {
      await makeFiles(folder, {'docker-compose.yml': 'services:\n  web:\n    image: x\n'})
      await assert.rejects(describeProject(folder, {...target, dockerfile: 'Dockerfile'}), expectedError('build.dockerfile'))
    })
  })
})
