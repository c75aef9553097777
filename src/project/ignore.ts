import path from 'node:path'

import dockerignoreModule, {type Ignore} from '@balena/dockerignore'

import {type ProjectFiles, projectFiles} from './files.js'

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

/** The text of `<folder>/.dockerignore` (folder relative to the project), or undefined when there is none. */
function readDockerignoreText(files: ProjectFiles, folder: string): Promise<string | undefined> {
  return files.readText(path.posix.join(folder, '.dockerignore'))
}

/** The rules of one build context alone, as Docker applies them when it builds that context: its own `.dockerignore`. */
export async function readContextIgnore(files: ProjectFiles, context: string): Promise<ProjectIgnore> {
  return createProjectIgnore((await readDockerignoreText(files, context)) ?? '')
}

/** The rules of one service's build context, for the paths under it (`context` is POSIX, relative to the project). */
export interface ContextIgnore {
  context: string
  ignore: ProjectIgnore
}

/**
 * One set of rules for a project whose services build from several contexts: a path under a context that has
 * its own `.dockerignore` follows that file, matched relative to the context, as Docker matches it when it builds
 * that context (the deepest such context wins; the root's rules are not consulted, as balena-cli's
 * `--multi-dockerignore` has it). Every other path follows the root's rules. A context folder itself is always
 * kept, so the service still has something to build from; `.git` is always out.
 */
export function combineContextIgnores(root: ProjectIgnore, contexts: ContextIgnore[]): ProjectIgnore {
  const deepestFirst = contexts.filter(({context}) => context !== '.' && context !== '').sort((left, right) => right.context.length - left.context.length)
  return {
    ignores(relativePath) {
      if (isInsideGitFolder(relativePath)) return true
      for (const {context, ignore} of deepestFirst) {
        if (relativePath === context) return false
        if (relativePath.startsWith(`${context}/`)) return ignore.ignores(relativePath.slice(context.length + 1))
      }

      return root.ignores(relativePath)
    },
  }
}

/**
 * Reads `<folder>/.dockerignore` (a missing one ignores nothing but `.git`) and, for each build context in
 * `contexts` (POSIX, relative to the folder) that has a `.dockerignore` of its own, that one for the paths under it.
 */
export async function readProjectIgnore(project: string | ProjectFiles, contexts: string[] = []): Promise<ProjectIgnore> {
  const files = projectFiles(project)
  const root = await readContextIgnore(files, '.')
  const own: ContextIgnore[] = []
  for (const context of new Set(contexts)) {
    if (context === '.' || context === '') continue
    const text = await readDockerignoreText(files, context)
    if (text !== undefined) own.push({context, ignore: createProjectIgnore(text)})
  }

  return own.length === 0 ? root : combineContextIgnores(root, own)
}
