// Bundles the web dashboard (src/dashboard) for browsers into dist/dashboard: one script and one style sheet with
// content-hashed names (the server may then let browsers keep them for a year), and the page naming them.
// Preact and xterm.js are bundled in; nothing is fetched from elsewhere at run time. Code the page imports lazily
// (xterm.js, for a terminal) goes into chunks of its own, so the first load does not carry it.
import {readFileSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'

import {build} from 'esbuild'

/** Builds the dashboard of the project at `root`; returns the names of the files written under dist/dashboard. */
export async function bundleDashboard(root) {
  const source = path.join(root, 'src', 'dashboard')
  const outdir = path.join(root, 'dist', 'dashboard')
  rmSync(outdir, {recursive: true, force: true})
  const result = await build({
    entryPoints: {app: path.join(source, 'main.ts')},
    bundle: true,
    outdir,
    entryNames: '[name]-[hash]',
    chunkNames: 'chunk-[hash]',
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox110', 'safari16'],
    minify: true,
    metafile: true,
    legalComments: 'none',
    logLevel: 'warning',
  })
  const outputs = Object.keys(result.metafile.outputs).map((file) => path.basename(file))
  const [entry, {cssBundle}] = Object.entries(result.metafile.outputs).find(([, output]) => output.entryPoint !== undefined)
  const script = path.basename(entry)
  const style = path.basename(cssBundle)
  const page = readFileSync(path.join(source, 'index.html'), 'utf8').replace('{{script}}', `/dashboard/${script}`).replace('{{style}}', `/dashboard/${style}`)
  writeFileSync(path.join(outdir, 'index.html'), page)
  return [...outputs, 'index.html']
}
