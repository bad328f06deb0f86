/**
 * `dashboard(broker)`: a live web dashboard (overview with charts, clients with kick, subscriptions,
 * retained messages, listeners, bridges, bans) and
 * its JSON API, as one Node `(req, res, next?)` handler a host mounts under any prefix.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { log } from '../logging.js'
import { isValidTopicName } from '../protocol/topics.js'
import { DashboardApi, MAX_LIMIT, type DashboardSource } from './api.js'
import { streamStats } from './events.js'
import { LoginGuard } from './login-guard.js'
import { indexPage, staticAsset } from './static.js'

export type {
  DashboardBridge,
  DashboardClient,
  DashboardClientDetail,
  DashboardListener,
  DashboardRetained,
  DashboardRetainedMessage,
  DashboardSource,
  DashboardStats,
  DashboardSubscriptions,
  DashboardTopicFilter,
} from './api.js'

/** What `authorizeAdmin` is asked about: the HTTP Basic credentials of a dashboard request. */
export interface AdminCredentials {
  readonly username: string
  readonly password: string
  /**
   * True when the broker's `authenticate` hook accepted these credentials (as it would for a
   * client connecting over transport `'http'`); false when the broker has no `authenticate` hook,
   * in which case `authorizeAdmin` alone decides and must check the password itself. Credentials
   * the hook refuses never reach `authorizeAdmin`.
   */
  readonly authenticated: boolean
  /** The HTTP request (headers, address), for decisions beyond the credentials. */
  readonly request: IncomingMessage
}

/** Decides whether a dashboard request's credentials are an administrator's. May be async. */
export type AuthorizeAdminHook = (credentials: AdminCredentials) => boolean | Promise<boolean>

/** Options of {@link dashboard}. */
export interface DashboardOptions {
  /**
   * When given, every request needs HTTP Basic credentials. They go first to the broker's
   * `authenticate` hook, if it has one (401 when it refuses them), then to this decision: true lets
   * the request through; false gives 403 for credentials the broker accepted, else 401 with
   * `WWW-Authenticate`. Without it the dashboard is open to whoever reaches it: mount it where
   * only administrators do (the CLI binds 127.0.0.1 unless told otherwise). Over plain HTTP the
   * credentials cross the network in clear: put TLS in front when it is exposed.
   *
   * Accepted credentials are trusted for 10 s without a new check (the page polls; each check may
   * run a slow password hash), so a ban or a changed password takes up to that long to apply here.
   * An address with 10 failed checks within a minute gets 429 for a minute without a check.
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
  /** The clock of the login throttle, ms since the epoch (tests). Default `Date.now`. */
  now?: () => number
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

const CROSS_ORIGIN = 'cross-origin request refused: send X-Culex-Request: 1 from the same origin'

/** `?limit=`: default 500, at most {@link MAX_LIMIT}. */
function limit(query: URLSearchParams): number {
  const n = Number(query.get('limit') ?? 500)
  return Number.isInteger(n) && n > 0 ? Math.min(n, MAX_LIMIT) : 500
}

/** The GET (and HEAD) routes of the JSON API that answer with one JSON body. */
const READ_ROUTES: Record<string, ((api: DashboardApi, query: URLSearchParams) => unknown) | undefined> = {
  '/api/v1/stats': (api) => api.stats(),
  '/api/v1/events': () => undefined,
  '/api/v1/clients': (api, q) => ({ clients: api.clients(q.get('q') ?? '') }),
  '/api/v1/subscriptions': (api, q) => api.subscriptions(q.get('q') ?? '', limit(q)),
  '/api/v1/retained': (api, q) => api.retained(q.get('filter') || '#', limit(q)),
  '/api/v1/listeners': (api) => ({ listeners: api.listeners() }),
  '/api/v1/bridges': (api) => ({ bridges: api.bridges() }),
  '/api/v1/bans': (api) => ({ bans: api.bans() }),
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
 * clients (search, details, kick), subscriptions, retained messages (browse, delete), listeners,
 * bridges and bans. Its JSON API, for scripts too:
 *
 * - `GET api/v1/stats`: `broker.stats()` plus `eventLoopDelayMs`;
 * - `GET api/v1/events`: `text/event-stream`, that snapshot every second;
 * - `GET api/v1/clients[?q=text]`: the connected clients (search by id, user name or address);
 * - `GET api/v1/clients/:id`: one client and its subscriptions (404 when not connected);
 * - `POST api/v1/clients/:id/kick`: disconnects it (`client.close()`); needs the header
 *   `X-Culex-Request: 1` and, when the request has an `Origin`, the same host (else 403);
 * - `GET api/v1/subscriptions[?q=text&limit=n]`: topic filters subscribed to, most subscribers first;
 * - `GET api/v1/retained[?filter=f&limit=n]`: retained messages matching `f` (default `#`), by topic;
 * - `DELETE api/v1/retained?topic=t`: deletes that topic's retained message (same-origin rules as kick);
 * - `GET api/v1/listeners`, `GET api/v1/bridges`, `GET api/v1/bans`.
 *
 * With `authorizeAdmin`, every request needs HTTP Basic credentials that the broker's
 * `authenticate` hook and `authorizeAdmin` accept (else 401, or 403 for a user who is not an administrator).
 *
 * ```ts
 * app.use('/culex', dashboard(broker, { authorizeAdmin: ({ username, password }) => check(username, password) }))  // Express
 * await fastify.register(culexDashboard, { broker, prefix: '/culex' })                            // Fastify (culex-mqtt/fastify)
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
    if (path === '/api/v1/retained' && method === 'DELETE') {
      if (!sameOrigin(req)) return sendError(req, res, 403, CROSS_ORIGIN)
      const topic = query.get('topic') ?? ''
      if (!isValidTopicName(topic) || topic.startsWith('$')) {
        // $SYS and other $ topics are the broker's own [MQTT-4.7.2-1]: clients cannot publish there either.
        return sendError(req, res, 400, `cannot delete the retained message of ${JSON.stringify(topic)}: not a topic name a client may publish to`)
      }
      api.deleteRetained(topic).then(
        (deleted) => {
          if (!deleted) return sendError(req, res, 404, 'no retained message on that topic')
          log.broker('dashboard: deleted the retained message of %s', topic)
          sendJson(req, res, 200, { deleted: topic })
        },
        (error: unknown) => {
          log.error('dashboard: deleting the retained message of %s failed: %O', topic, error)
          sendError(req, res, 500, 'the store refused the change')
        },
      )
      return
    }
    const reader = READ_ROUTES[path]
    if (reader !== undefined) {
      if (!read) return notAllowed(path === '/api/v1/retained' ? 'GET, HEAD, DELETE' : 'GET, HEAD')
      if (path === '/api/v1/events') return streamStats(req, res, () => api.stats(), intervalMs)
      let body: unknown
      try {
        body = reader(api, query)
      } catch (error) {
        if (error instanceof TypeError) return sendError(req, res, 400, error.message)
        throw error
      }
      return sendJson(req, res, 200, body)
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
      if (!sameOrigin(req)) return sendError(req, res, 403, CROSS_ORIGIN)
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
    // A `+` in a query is a topic wildcard here, not a space (as `curl '...?filter=a/+/b'` means it).
    const query = new URLSearchParams(q === -1 ? '' : url.slice(q + 1).replaceAll('+', '%2B'))
    try {
      route(req, res, path, query, next)
    } catch (error) {
      log.error('dashboard %s %s failed: %O', req.method, path, error)
      if (res.headersSent) res.destroy(error instanceof Error ? error : undefined)
      else sendError(req, res, 500, 'internal error')
    }
  }

  if (authorizeAdmin === undefined) return serve
  const challenge = { 'WWW-Authenticate': 'Basic realm="Culex dashboard", charset="UTF-8"' }
  const guard = new LoginGuard(options.now)
  return (req, res, next) => {
    const credentials = basicCredentials(req)
    if (credentials === undefined) return sendError(req, res, 401, 'authentication required', challenge)
    const authorization = req.headers.authorization ?? ''
    const address = req.socket.remoteAddress ?? ''
    const wait = guard.retryAfterMs(address)
    if (wait > 0) {
      log.broker('dashboard: %s refused, too many failed logins from %s', req.url, address)
      return sendError(req, res, 429, 'too many failed logins: try again later', { 'Retry-After': String(Math.ceil(wait / 1000)) })
    }
    // Accepted a moment ago (the page polls): no new password hash per request.
    if (guard.wasAccepted(authorization)) return serve(req, res, next)
    const decide = async (): Promise<number> => {
      // The broker's own authenticate hook vouches for the password first, where it has one.
      const authenticated = await broker.checkCredentials({ ...credentials, request: req })
      if (authenticated === false) return 401
      const allowed = await authorizeAdmin({ ...credentials, request: req, authenticated: authenticated === true })
      if (allowed === true) return 200
      // Known to the broker but not an administrator: no point asking for the same credentials again.
      return authenticated === true ? 403 : 401
    }
    decide().then(
      (status) => {
        guard.record(address, authorization, status === 200)
        // The client left while its credentials were checked.
        if (res.destroyed) return
        if (status === 200) return serve(req, res, next)
        log.broker('dashboard: %s refused to %s (%d)', req.url, credentials.username, status)
        if (status === 403) sendError(req, res, 403, 'not an administrator')
        else sendError(req, res, 401, 'authentication required', challenge)
      },
      (error: unknown) => {
        log.error('dashboard authorizeAdmin failed: %O', error)
        sendError(req, res, 401, 'authentication required', challenge)
      },
    )
  }
}
