import tseslint from 'typescript-eslint'

/** Modules too heavy for the startup path: commands must load them with `await import()` inside run(). */
const HEAVY_MODULES = [
  {name: 'dockerode', message: 'import dockerode inside run(): startup must stay fast'},
  {name: 'ssh2', message: 'import ssh2 inside run(): startup must stay fast'},
  {name: 'fastify', message: 'import fastify inside run(): startup must stay fast'},
  {name: 'libsql', message: 'import libsql inside run(): startup must stay fast'},
  {name: 'kysely', message: 'import kysely inside run(): startup must stay fast'},
  {name: '@lydell/node-pty', message: 'import @lydell/node-pty inside run(): startup must stay fast'},
  {name: 'got', message: 'import got through the sdk, inside run(): startup must stay fast'},
]
const HEAVY_PATTERNS = [
  {group: ['**/server/**', '**/agent/**'], message: 'import the server and the agent inside run(): startup must stay fast'},
  {group: ['lzma*', 'xz*', '*bzip2*', 'unbzip2*', 'yauzl*', 'unzipper', '*zstd*', 'tar-stream'], message: 'import codecs inside run(): startup must stay fast'},
]

export default tseslint.config(
  {ignores: ['dist/', 'coverage/', 'node_modules/', 'oclif.manifest.json']},
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_'}],
      'no-warning-comments': ['error', {terms: ['todo', 'fixme', 'xxx'], location: 'start'}],
    },
  },
  {
    // Routes reach the database through the data-access layer (src/server/db/), never by building queries.
    files: ['src/server/routes/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: 'CallExpression[callee.property.name=/^(selectFrom|insertInto|replaceInto|updateTable|deleteFrom|mergeInto|transaction)$/]',
          message: 'routes reach the database through src/server/db/ (or the release lifecycle): add a function there',
        },
        {selector: 'TaggedTemplateExpression[tag.name="sql"]', message: 'routes reach the database through src/server/db/: add a function there'},
      ],
      '@typescript-eslint/no-restricted-imports': ['error', {paths: [{name: 'kysely', message: 'routes reach the database through src/server/db/', allowTypeImports: true}]}],
    },
  },
  {
    files: ['src/commands/**/*.ts', 'src/cli/**/*.ts', 'src/hooks/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': ['error', {paths: HEAVY_MODULES.map((entry) => ({...entry, allowTypeImports: true})), patterns: HEAVY_PATTERNS.map((entry) => ({...entry, allowTypeImports: true}))}],
    },
  },
)
