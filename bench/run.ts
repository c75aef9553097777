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
// Nothing a bench started keeps the process alive once it is over (the PostgreSQL cluster of test/helpers/postgres.ts
// stops as the process exits): a bench that does not end by itself has left something running, and shows it.
await bench.run()
