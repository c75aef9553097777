#!/usr/bin/env -S node --import tsx --no-warnings
// Runs the TypeScript sources: oclif finds each command file under src/commands, where the built CLI would use
// the bundle's COMMANDS (package.json), which the sources do not have.
import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {execute} from '@oclif/core'

const root = fileURLToPath(new URL('..', import.meta.url))
const pjson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
pjson.oclif.commands = './dist/commands'
pjson.oclif.hooks = {command_not_found: './dist/hooks/command-not-found.js'}
await execute({development: true, dir: import.meta.url, loadOptions: {root, pjson}})
