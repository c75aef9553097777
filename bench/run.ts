/** `npm run bench -- <name>`: runs bench/<name>.ts, which prints its figures beside a reference measured in the same run. */
import {readdirSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const available = readdirSync(here)
  .filter((file) => file.endsWith('.ts') && !['run.ts', 'measure.ts'].includes(file))
  .map((file) => file.replace(/\.ts$/, ''))
const name = process.argv[2]
if (!name || !available.includes(name)) {
  process.stderr.write(`usage: npm run bench -- <${available.join('|')}>\n`)
  process.exit(2)
}

const bench = (await import(`./${name}.ts`)) as {run: () => Promise<void>}
await bench.run()
// A bench is over once its figures are printed: what it started for the whole run (the PostgreSQL cluster of
// test/helpers/postgres.ts, its admin connection) is stopped by the exit, rather than keeping the process alive.
process.exit(0)
