import {strict as assert} from 'node:assert'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {ExpectedError} from '../../../src/errors.js'
import {combineContextIgnores, createProjectIgnore, readProjectIgnore} from '../../../src/project/ignore.js'

describe('project ignore rules', () => {
  it('ignores what .dockerignore lists, with Docker pattern syntax', () => {
    const rules = createProjectIgnore('node_modules\n*.log\nbuild/\n# a comment\n')
    assert.equal(rules.ignores('node_modules'), true)
    assert.equal(rules.ignores('node_modules/left-pad/index.js'), true)
    assert.equal(rules.ignores('debug.log'), true)
    assert.equal(rules.ignores('build/out.bin'), true)
    assert.equal(rules.ignores('src/index.js'), false)
  })

  it('matches a plain pattern at the root only and "*" within one folder, as Docker does (unlike .gitignore)', () => {
    const rules = createProjectIgnore('secret.txt\n*.log\n')
    assert.equal(rules.ignores('secret.txt'), true)
    assert.equal(rules.ignores('nested/secret.txt'), false)
    assert.equal(rules.ignores('nested/debug.log'), false)
  })

  it('lets a later negation bring back a file, even inside an ignored folder', () => {
    const rules = createProjectIgnore('*.log\n!keep.log\nassets\n!assets/logo.png\n')
    assert.equal(rules.ignores('drop.log'), true)
    assert.equal(rules.ignores('keep.log'), false)
    assert.equal(rules.ignores('assets/big.bin'), true)
    assert.equal(rules.ignores('assets/logo.png'), false)
  })

  it('always leaves out .git, at any depth, even when .dockerignore re-includes it', () => {
    const rules = createProjectIgnore('!.git\n!**/.git\n!.git/config\n')
    assert.equal(rules.ignores('.git'), true)
    assert.equal(rules.ignores('.git/config'), true)
    assert.equal(rules.ignores('vendor/lib/.git'), true)
    assert.equal(rules.ignores('vendor/lib/.git/HEAD'), true)
    assert.equal(rules.ignores('.gitignore'), false)
    assert.equal(rules.ignores('docs/.github/workflow.yml'), false)
  })

  it('always keeps Dockerfiles, compose files and .balena, even when .dockerignore lists them', () => {
    const rules = createProjectIgnore('Dockerfile*\n**/Dockerfile\ndocker-compose.yml\ndocker-compose.yaml\n.balena\nservices\n*\n')
    for (const kept of [
      'Dockerfile',
      'Dockerfile.template',
      'Dockerfile.raspberrypi4-64',
      'services/web/Dockerfile',
      'services/web/Dockerfile.aarch64',
      'docker-compose.yml',
      'docker-compose.yaml',
      '.balena/balena.yml',
      '.resin/resin.yml',
    ]) {
      assert.equal(rules.ignores(kept), false, kept)
    }

    assert.equal(rules.ignores('services/web/app.js'), true)
    assert.equal(rules.ignores('README.md'), true)
  })

  describe('per build context', () => {
    const root = createProjectIgnore('**/*.tmp\nfrontend/cache\n')
    const rules = combineContextIgnores(root, [
      {context: 'frontend', ignore: createProjectIgnore('node_modules\n*.log\nDockerfile\n.balena\n!keep.log\n')},
      {context: 'frontend/widgets', ignore: createProjectIgnore('dist\n')},
      {context: '.', ignore: createProjectIgnore('*\n')},
    ])

    it("matches a context's own patterns relative to the context, for the paths under it", () => {
      assert.equal(rules.ignores('frontend/node_modules/react/index.js'), true)
      assert.equal(rules.ignores('frontend/debug.log'), true)
      assert.equal(rules.ignores('frontend/keep.log'), false)
      assert.equal(rules.ignores('frontend/src/app.js'), false)
      assert.equal(rules.ignores('node_modules/x.js'), false, "the root's rules do not know the context's patterns")
    })

    it("does not apply the root's rules under a context with its own .dockerignore, as Docker builds that context", () => {
      assert.equal(rules.ignores('frontend/cache/blob'), false)
      assert.equal(rules.ignores('frontend/a.tmp'), false)
      assert.equal(rules.ignores('backend/a.tmp'), true)
    })

    it('lets the deepest context decide, and keeps every context folder', () => {
      assert.equal(rules.ignores('frontend/widgets/dist/w.js'), true)
      assert.equal(rules.ignores('frontend/widgets/debug.log'), false, 'frontend/widgets follows its own file only')
      assert.equal(rules.ignores('frontend'), false)
      assert.equal(rules.ignores('frontend/widgets'), false)
    })

    it('keeps balena\'s fixed rules inside a context: Dockerfiles and .balena in, .git out', () => {
      assert.equal(rules.ignores('frontend/Dockerfile'), false)
      assert.equal(rules.ignores('frontend/.balena/balena.yml'), false)
      assert.equal(rules.ignores('frontend/.git/HEAD'), true)
      assert.equal(rules.ignores('frontend/widgets/.git'), true)
    })
  })

  describe('readProjectIgnore', () => {
    let folder: string
    beforeEach(async () => {
      folder = await mkdtemp(path.join(tmpdir(), 'flotilla-ignore-'))
    })
    afterEach(async () => {
      await rm(folder, {recursive: true, force: true})
    })

    it('reads the .dockerignore of the folder', async () => {
      await writeFile(path.join(folder, '.dockerignore'), 'tmp\n')
      const rules = await readProjectIgnore(folder)
      assert.equal(rules.ignores('tmp/x'), true)
      assert.equal(rules.ignores('src/x'), false)
    })

    it('ignores only .git when there is no .dockerignore', async () => {
      const rules = await readProjectIgnore(folder)
      assert.equal(rules.ignores('anything/at/all'), false)
      assert.equal(rules.ignores('.git/HEAD'), true)
    })

    it("reads the .dockerignore of each build context that has one; a context without one follows the root's", async () => {
      await writeFile(path.join(folder, '.dockerignore'), '**/*.bin\n')
      await mkdir(path.join(folder, 'api'))
      await mkdir(path.join(folder, 'web'))
      await writeFile(path.join(folder, 'api/.dockerignore'), 'secrets\n')
      const rules = await readProjectIgnore(folder, ['.', 'api', 'web', 'api'])
      assert.equal(rules.ignores('api/secrets/key'), true)
      assert.equal(rules.ignores('api/model.bin'), false, "api's own file replaces the root's for api/")
      assert.equal(rules.ignores('web/model.bin'), true)
      assert.equal(rules.ignores('model.bin'), true)
      assert.equal(rules.ignores('secrets/key'), false)
    })

    it('says which file it could not read', async () => {
      await rm(folder, {recursive: true})
      await writeFile(folder, 'a file where the folder should be')
      await assert.rejects(readProjectIgnore(folder), (error: Error) => error instanceof ExpectedError && error.message.includes(path.join(folder, '.dockerignore')))
    })
  })
})
