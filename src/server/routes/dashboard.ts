import {createHash} from 'node:crypto'
import {readdir, readFile} from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import type {FastifyInstance, FastifyReply, FastifyRequest} from 'fastify'

import {notFound} from '../http-errors.js'

/**
 * What the browser may do with the dashboard's pages: run only scripts of this server (no inline script, no eval),
 * style with its files and no style attributes, talk only to this server (its terminal WebSocket included: 'self'
 * covers ws: and wss: to the page's host), never be framed by another site.
 * One loosening, for the terminal: xterm.js's renderer writes the cell sizes and colours it measures into <style>
 * elements it makes, which count as inline styles. `style-src-elem` lets those in; style attributes stay refused
 * (`style-src`). A <style> element cannot run script, and device or user values are only ever text in the page.
 */
export const DASHBOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "style-src-elem 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
}

interface DashboardFile {
  body: Buffer
  type: string
  etag: string
}

/** The built dashboard (dist/dashboard) of the flotilla package this module belongs to, source checkout or bundle. */
async function findDashboardDir(): Promise<string | undefined> {
  for (let directory = path.dirname(fileURLToPath(import.meta.url)); directory !== path.dirname(directory); directory = path.dirname(directory)) {
    const manifest = await readFile(path.join(directory, 'package.json'), 'utf8').catch(() => undefined)
    if (manifest && (JSON.parse(manifest) as {name?: string}).name === 'flotilla') return path.join(directory, 'dist', 'dashboard')
  }

  return undefined
}

/** Every file of the built dashboard, read once: a handful of small files, served from memory. */
async function loadDashboardFiles(): Promise<Map<string, DashboardFile>> {
  const files = new Map<string, DashboardFile>()
  const directory = await findDashboardDir()
  if (!directory) return files
  const names = await readdir(directory).catch(() => [] as string[])
  for (const name of names) {
    const type = CONTENT_TYPES[path.extname(name)]
    if (!type) continue
    const body = await readFile(path.join(directory, name))
    files.set(name, {body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`})
  }

  return files
}

function sendFile(request: FastifyRequest, reply: FastifyReply, file: DashboardFile, cacheControl: string) {
  reply
    .header('content-security-policy', DASHBOARD_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', cacheControl)
    .header('etag', file.etag)
  if (request.headers['if-none-match'] === file.etag) return reply.code(304).send()
  return reply.type(file.type).send(file.body)
}

/**
 * The web dashboard: its page at `/` and its hashed assets under `/dashboard/`. Nothing else: every other path
 * stays the API's, and an unknown one keeps its API 404.
 */
export function registerDashboardRoutes(app: FastifyInstance): void {
  let files: Promise<Map<string, DashboardFile>> | undefined
  const dashboardFiles = () => (files ??= loadDashboardFiles())

  app.get('/', async (request, reply) => {
    const page = (await dashboardFiles()).get('index.html')
    if (!page) throw notFound('the dashboard is not built — run "npm run build" in the flotilla checkout')
    // The page names the current assets: browsers ask again each time (a 304 when unchanged).
    return sendFile(request, reply, page, 'no-cache')
  })

  app.get<{Params: {file: string}}>('/dashboard/:file', async (request, reply) => {
    const file = request.params.file === 'index.html' ? undefined : (await dashboardFiles()).get(request.params.file)
    if (!file) throw notFound(`no such dashboard file: ${request.params.file}`)
    // Asset names carry a hash of their content: a changed file has a new name.
    return sendFile(request, reply, file, 'public, max-age=31536000, immutable')
  })
}
