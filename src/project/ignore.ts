import {readFile} from 'node:fs/promises'
import path from 'node:path'

import dockerignoreModule, {type Ignore} from '@balena/dockerignore'

import {ExpectedError} from '../errors.js'

/**
 * What balena-cli always sends whatever `.dockerignore` says: the builder needs these to know what to build.
 * `docker-compose.yaml` is added to balena's list because flotilla reads that spelling too.
 */
const ALWAYS_INCLUDED = ['**/.balena', '**/.resin', '**/Dockerfile', '**/Dockerfile.*', '**/docker-compose.yml', '**/docker-compose.yaml']

/** The package is CommonJS whose `module.exports` is the factory, but its types declare an ES default export, which NodeNext then nests one level too deep. */
const dockerignore = dockerignoreModule as unknown as (options: {ignorecase: boolean}) => Ignore

/** Decides which paths of a project folder stay out of the build context. */
export interface ProjectIgnore {
  /** `relativePath` uses forward slashes and is relative to the project folder, without a leading `./`. */
  ignores(relativePath: string): boolean
}

/** A path inside a `.git` folder (or a `.git` file of a worktree) never leaves the machine, even if `.dockerignore` re-includes it. */
export function isInsideGitFolder(relativePath: string): boolean {
  return relativePath === '.git' || relativePath.startsWith('.git/') || relativePath.endsWith('/.git') || relativePath.includes('/.git/')
}

/** The ignore rules of a project from the text of its `.dockerignore`, with Docker's pattern syntax and balena's fixed rules on top. */
export function createProjectIgnore(dockerignoreText: string): ProjectIgnore {
  const rules = dockerignore({ignorecase: false})
    .add(dockerignoreText)
    .add(ALWAYS_INCLUDED.map((pattern) => `!${pattern}`))
  return {
    ignores: (relativePath) => isInsideGitFolder(relativePath) || rules.ignores(relativePath),
  }
}

/** Reads `<folder>/.dockerignore` (a missing one ignores nothing but `.git`). */
export async function readProjectIgnore(folder: string): Promise<ProjectIgnore> {
  const file = path.join(folder, '.dockerignore')
  let text = ''
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ExpectedError(`cannot read ${file}: ${(error as Error).message}`, {cause: error})
    }
  }

  return createProjectIgnore(text)
}
