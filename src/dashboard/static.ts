/**
 * The dashboard's static files: the page, its one ES module and stylesheet (in the package's
 * top-level `dashboard/` folder, two levels above both src/dashboard/ and dist/dashboard/), and
 * uPlot, resolved from the installed `uplot` package. Read once, on first request, then kept.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const ASSETS = new URL('../../dashboard/', import.meta.url)

/** A file the dashboard serves: its bytes and content type. */
export interface StaticAsset {
  readonly body: Buffer
  readonly contentType: string
}

const FILES: Record<string, { path: () => string; contentType: string }> = {
  '/app.js': { path: () => fileURLToPath(new URL('app.js', ASSETS)), contentType: 'text/javascript; charset=utf-8' },
  '/style.css': { path: () => fileURLToPath(new URL('style.css', ASSETS)), contentType: 'text/css; charset=utf-8' },
  '/vendor/uPlot.esm.js': { path: () => require.resolve('uplot/dist/uPlot.esm.js'), contentType: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.min.css': { path: () => require.resolve('uplot/dist/uPlot.min.css'), contentType: 'text/css; charset=utf-8' },
}

const cache = new Map<string, StaticAsset>()

/** The static file served at `path` (relative to the mount point), or undefined when there is none. */
export function staticAsset(path: string): StaticAsset | undefined {
  const file = FILES[path]
  if (file === undefined) return undefined
  let asset = cache.get(path)
  if (asset === undefined) {
    asset = { body: readFileSync(file.path()), contentType: file.contentType }
    cache.set(path, asset)
  }
  return asset
}

let page: string | undefined

/** The page, with `title` (HTML-escaped) in its `<title>` and heading. */
export function indexPage(title: string): string {
  page ??= readFileSync(new URL('index.html', ASSETS), 'utf8')
  return page.replaceAll('{{title}}', escapeHtml(title))
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}
