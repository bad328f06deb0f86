/**
 * `dashboard(broker)`: a live web dashboard (overview with charts, clients with kick, bans) and
 * its JSON API, as one Node `(req, res, next?)` handler a host mounts under any prefix.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { log } from '../logging.js'
import { DashboardApi, type DashboardSource } from './api.js'
import { streamStats } from './events.js'
import { indexPage, staticAsset } from './static.js'

export type { DashboardClient, DashboardClientDetail, DashboardSource, DashboardStats } from './api.js'

/** What `authorizeAdmin` is asked about: the HTTP Basic credentials of a dashboard request. */
export interface AdminCredentials {
  readonly username: string
  readonly password: string
  /** The HTTP request (headers, address), for decisions beyond the credentials. */
  readonly request: IncomingMessage
}

/** Decides whether a dashboard request's credentials are an administrator's. May be async. */
export type AuthorizeAdminHook = (credentials: AdminCredentials) => boolean | Promise<boolean>

/** Options of {@link dashboard}. */
export interface DashboardOptions {
  /**
   * When given, every request needs HTTP Basic credentials that this accepts; others get 401 with
   * `WWW-Authenticate`. Without it the dashboard is open to whoever reaches it: mount it where
   * only administrators do (the CLI binds 127.0.0.1 unless told otherwise).
   */
  authorizeAdmin?: AuthorizeAdminHook
  /** The page's title. Default `'Culex'`. */
  title?: string
  /**
   * A path prefix to strip from `req.url`, for hosts that hand over the full URL (Fastify's
   * `req.raw` under a prefix, a bare `node:http` server). A URL without it is routed as it is, so
   * the same handler also works where the host strips it (Express's `app.use('/culex', handler)`).
   */
  prefix?: string
  /** Milliseconds between the stats snapshots of `api/v1/events`. Default 1000. */
  eventIntervalMs?: number
}

/**
 * A Node request handler. `next`, when given, is called for paths the dashboard does not serve
 * (Express's `next` fits); without it they get 404.
 */
export type DashboardHandler = (req: IncomingMessage, res: ServerResponse, next?: () => void) => void

/** The header the page's own `fetch` sends with state-changing requests; a cross-site form cannot. */
export const DASHBOARD_REQUEST_HEADER = 'x-culex-request'

function send(req: IncomingMessage, res: ServerResponse, status: number, contentType: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
  res.statusCode = status
  res.setHeader('Content-Type', contentType)
  res.setHeader('Content-Length', String(bytes.length))
  res.setHeader('Cache-Control', 'no-store')
  res.setHeader('X-Content-Type-Options', 'nosniff')
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
  if (req.method === 'HEAD') res.end()
  else res.end(bytes)
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  send(req, res, status, 'application/json; charset=utf-8', JSON.stringify(body))
}

function sendError(req: IncomingMessage, res: ServerResponse, status: number, error: string, headers: Record<string, string> = {}): void {
  send(req, res, status, 'application/json; charset=utf-8', JSON.stringify({ error }), headers)
}

/** The HTTP Basic credentials of a request, if it carries well-formed ones. */
function basicCredentials(req: IncomingMessage): { username: string; password: string } | undefined {
  const header = req.headers.authorization
  const match = header === undefined ? null : /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header)
  if (match === null) return undefined
  const decoded = Buffer.from(match[1] ?? '', 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon === -1) return undefined
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
}

/**
 * Whether a state-changing request comes from the dashboard's own page: it carries the custom
 * header (which a cross-site form or a simple cross-origin request cannot send), and its
 * `Origin`, when present, names the host it was sent to.
 */
function sameOrigin(req: IncomingMessage): boolean {
  if (req.headers[DASHBOARD_REQUEST_HEADER] !== '1') return false
  const origin = req.headers.origin
  if (origin === undefined) return true
  try {
    return new URL(origin).host === req.headers.host
  } catch {
    return false
  }
}

const PAGE_HEADERS = {
  'Content-Security-Policy': "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'no-referrer',
}

/**
 * A live dashboard for the broker, and its JSON API, as one Node `(req, res, next?)` handler to
 * mount under any prefix. The page (static HTML, one ES module, a stylesheet and uPlot, no build
 * step) shows the broker's figures with live charts fed by Server-Sent Events, the connected
 * clients (search, details, kick) and the bans. Its JSON API, for scripts too:
 *
 * - `GET api/v1/stats`: `broker.stats()` plus `eventLoopDelayMs`;
 * - `GET api/v1/events`: `text/event-stream`, that snapshot every second;
 * - `GET api/v1/clients[?q=text]`: the connected clients (search by id, user name or address);
 * - `GET api/v1/clients/:id`: one client and its subscriptions (404 when not connected);
 * - `POST api/v1/clients/:id/kick`: disconnects it (`client.close()`); needs the header
 *   `X-Culex-Request: 1` and, when the request has an `Origin`, the same host (else 403);
 * - `GET api/v1/bans`: the bans in force.
 *
 * With `authorizeAdmin`, every request needs HTTP Basic credentials it accepts (else 401).
 *
 * ```ts
 * app.use('/culex', dashboard(broker, { authorizeAdmin: ({ username, password }) => check(username, password) }))  // Express
 * fastify.register(async (scope) => {                                                                  // Fastify
 *   const handler = dashboard(broker, { prefix: '/culex' })
 *   scope.all('/', (req, reply) => { reply.hijack(); handler(req.raw, reply.raw) })
 *   scope.all('/*', (req, reply) => { reply.hijack(); handler(req.raw, reply.raw) })
 * }, { prefix: '/culex' })
 * http.createServer(dashboard(broker)).listen(8080, '127.0.0.1')                                      // node:http
 * ```
 */
export function dashboard(broker: DashboardSource, options: DashboardOptions = {}): DashboardHandler {
  const api = new DashboardApi(broker)
  const title = options.title ?? 'Culex'
  const prefix = (options.prefix ?? '').replace(/\/+$/, '')
  const intervalMs = options.eventIntervalMs ?? 1000
  const authorizeAdmin = options.authorizeAdmin

  const route = (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams, next?: () => void): void => {
    const method = req.method ?? 'GET'
    const read = method === 'GET' || method === 'HEAD'
    const notAllowed = (allow: string): void => sendError(req, res, 405, 'method not allowed', { Allow: allow })

    if (path === '/' || path === '/index.html') {
      if (!read) return notAllowed('GET, HEAD')
      // The page's URLs are relative: it must be served at `<prefix>/`, not `<prefix>`.
      const seen = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '/'
      const seenPath = seen.split('?')[0] ?? '/'
      if (path === '/' && !seenPath.endsWith('/')) {
        const location = seenPath + '/' + (seen.includes('?') ? seen.slice(seen.indexOf('?')) : '')
        return send(req, res, 308, 'text/plain; charset=utf-8', `Redirecting to ${location}\n`, { Location: location })
      }
      return send(req, res, 200, 'text/html; charset=utf-8', indexPage(title), PAGE_HEADERS)
    }
    const asset = staticAsset(path)
    if (asset !== undefined) {
      if (!read) return notAllowed('GET, HEAD')
      return send(req, res, 200, asset.contentType, asset.body)
    }
    if (path === '/api/v1/stats' || path === '/api/v1/clients' || path === '/api/v1/bans' || path === '/api/v1/events') {
      if (!read) return notAllowed('GET, HEAD')
      if (path === '/api/v1/stats') return sendJson(req, res, 200, api.stats())
      if (path === '/api/v1/clients') return sendJson(req, res, 200, { clients: api.clients(query.get('q') ?? '') })
      if (path === '/api/v1/bans') return sendJson(req, res, 200, { bans: api.bans() })
      return streamStats(req, res, () => api.stats(), intervalMs)
    }
    const client = /^\/api\/v1\/clients\/([^/]+)(\/kick)?$/.exec(path)
    if (client !== null) {
      let id: string
      try {
        id = decodeURIComponent(client[1] ?? '')
      } catch {
        return sendError(req, res, 400, 'bad client id')
      }
      if (client[2] === undefined) {
        if (!read) return notAllowed('GET, HEAD')
        const detail = api.client(id)
        return detail === undefined ? sendError(req, res, 404, 'no such client') : sendJson(req, res, 200, detail)
      }
      if (method !== 'POST') return notAllowed('POST')
      if (!sameOrigin(req)) return sendError(req, res, 403, 'cross-origin request refused: send X-Culex-Request: 1 from the same origin')
      if (!api.kick(id)) return sendError(req, res, 404, 'no such client')
      log.broker('dashboard: kicked client %s', id)
      return sendJson(req, res, 200, { kicked: id })
    }
    if (next !== undefined) next()
    else sendError(req, res, 404, 'not found')
  }

  const serve = (req: IncomingMessage, res: ServerResponse, next?: () => void): void => {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    let path = q === -1 ? url : url.slice(0, q)
    if (prefix !== '' && (path === prefix || path.startsWith(prefix + '/'))) path = path.slice(prefix.length) || '/'
    const query = new URLSearchParams(q === -1 ? '' : url.slice(q + 1))
    try {
      route(req, res, path, query, next)
    } catch (error) {
      log.error('dashboard %s %s failed: %O', req.method, path, error)
      if (res.headersSent) res.destroy(error instanceof Error ? error : undefined)
      else sendError(req, res, 500, 'internal error')
    }
  }

  if (authorizeAdmin === undefined) return serve
  return (req, res, next) => {
    const credentials = basicCredentials(req)
    const refuse = (): void => sendError(req, res, 401, 'authentication required', { 'WWW-Authenticate': 'Basic realm="Culex dashboard", charset="UTF-8"' })
    if (credentials === undefined) return refuse()
    Promise.resolve()
      .then(() => authorizeAdmin({ ...credentials, request: req }))
      .then(
        (allowed) => (allowed === true ? serve(req, res, next) : refuse()),
        (error: unknown) => {
          log.error('dashboard authorizeAdmin failed: %O', error)
          refuse()
        },
      )
  }
}
