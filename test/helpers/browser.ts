import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {type Browser, type BrowserContext, chromium, type Page} from 'playwright-core'

/** Debian's chromium: the browser tests drive the installed one, never a downloaded build. */
export const CHROMIUM_PATH = '/usr/bin/chromium'

export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({executablePath: CHROMIUM_PATH, args: ['--no-sandbox'], headless: true})
}

/** A page in its own context (its own sessionStorage), with what would betray a script run: dialogs and page errors. */
export interface WatchedPage {
  context: BrowserContext
  page: Page
  /** Messages of alert/confirm/prompt dialogs the page opened (each is dismissed). */
  dialogs: string[]
  /** Uncaught errors of the page's scripts. */
  errors: string[]
  /** Every URL the page requested. */
  urls: string[]
  /** Bytes received (headers and bodies) for every response since the last reset. */
  received(): Promise<number>
  resetReceived(): void
}

export async function openPage(browser: Browser, options: {viewport?: {width: number; height: number}} = {}): Promise<WatchedPage> {
  const context = await browser.newContext({viewport: options.viewport ?? {width: 1280, height: 900}})
  context.setDefaultTimeout(10_000)
  const page = await context.newPage()
  const dialogs: string[] = []
  const errors: string[] = []
  const urls: string[] = []
  let sizes: Array<Promise<number>> = []
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message())
    dialog.dismiss().catch(() => undefined)
  })
  page.on('pageerror', (error) => errors.push(error.message))
  page.on('request', (request) => urls.push(request.url()))
  page.on('requestfinished', (request) => {
    sizes.push(request.sizes().then((size) => size.responseHeadersSize + size.responseBodySize, () => 0))
  })
  return {
    context,
    page,
    dialogs,
    errors,
    urls,
    received: async () => (await Promise.all(sizes)).reduce((sum, size) => sum + size, 0),
    resetReceived: () => {
      sizes = []
    },
  }
}

/** A fresh folder for a test's screenshots: kept as artifacts after the run, never committed. */
export function screenshotFolder(name: string): string {
  return mkdtempSync(path.join(tmpdir(), `flotilla-${name}-screenshots-`))
}
