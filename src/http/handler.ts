/**
 * One plain Node `(req, res, next?)` handler for `/metrics`, `/healthz` and `/readyz`, to mount
 * in any host: Express, Fastify, `node:http`, or Culex's own operations server.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { BrokerHealth } from '../broker.js'
import { log } from '../logging.js'
import type { BrokerStats } from '../metrics/stats.js'
import { PROMETHEUS_CONTENT_TYPE, prometheusText } from './prometheus-text.js'

/** What the handler reads from the broker: a `Broker` fits. */
export interface OperationsSource {
  /** The snapshot `/metrics` renders. */
  stats(): BrokerStats
  /** What `/healthz` and `/readyz` report (and the event-loop delay for `/metrics`). */
  health(): BrokerHealth
}

/** Options of {@link operationsHandler}. */
export interface OperationsHandlerOptions {
  /** Serve `GET /metrics` (Prometheus text format 0.0.4). Default true. */
  metrics?: boolean
  /** Serve `GET /healthz` and `GET /readyz`. Default true. */
  health?: boolean
  /**
   * A path prefix to strip from `req.url` before routing, for hosts that hand over the full URL
   * (Fastify's `req.raw`, a bare `node:http` server): with `prefix: '/ops'`, `/ops/metrics` is
   * served as `/metrics`. A URL without the prefix is routed as it is, so the same handler also
   * works where the host already stripped it (Express's `app.use('/ops', handler)`).
   */
  prefix?: string
}

/**
 * A Node request handler. `next`, when given, is called for paths the handler does not serve
 * (Express's `next` fits); without it they get 404.
 */
export type OperationsHandler = (req: IncomingMessage, res: ServerResponse, next?: () => void) => void

const ALLOW = 'GET, HEAD'

/** Why the broker is not ready, for the `/readyz` body. */
function notReadyReason(health: BrokerHealth): { reason: string; detail: string } {
  if (health.draining) return { reason: 'draining', detail: 'the broker is draining: it accepts no new connections' }
  return { reason: 'not_listening', detail: 'the broker is not listening on any transport, is still restoring stored sessions, or is closed' }
}

function send(req: IncomingMessage, res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  const bytes = Buffer.from(body, 'utf8')
  res.statusCode = status
  res.setHeader('Content-Type', contentType)
  res.setHeader('Content-Length', String(bytes.length))
  res.setHeader('Cache-Control', 'no-store')
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
  // HEAD: the same status and headers as GET, no body.
  if (req.method === 'HEAD') res.end()
  else res.end(bytes)
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  send(req, res, status, 'application/json; charset=utf-8', JSON.stringify(body))
}

/** The request path without the query string and, when it starts with it, without `prefix`. */
function routePath(url: string, prefix: string): string {
  const query = url.indexOf('?')
  let path = query === -1 ? url : url.slice(0, query)
  if (prefix !== '' && (path === prefix || path.startsWith(prefix + '/'))) path = path.slice(prefix.length) || '/'
  return path
}

/**
 * A Node `(req, res, next?)` handler serving the broker's operations endpoints:
 *
 * - `GET /metrics`: Prometheus text format 0.0.4 (`text/plain; version=0.0.4; charset=utf-8`);
 * - `GET /healthz`: 200 `{"status":"ok",...}` while the process serves (event loop not stalled), else 503;
 * - `GET /readyz`: 200 `{"status":"ready",...}` when the broker is ready (listening, stored sessions
 *   restored, not draining nor closed), else 503 with `reason` `"draining"` or `"not_listening"`.
 *
 * HEAD works as GET without a body; another method on these paths gets 405. Other paths go to
 * `next()` when given, else 404. Responses are never cached (`Cache-Control: no-store`).
 *
 * ```ts
 * // Express 5 (the mount path is stripped by Express):
 * app.use('/ops', operationsHandler(broker))
 * // Fastify: hand it the raw request and response (HEAD comes with GET, exposeHeadRoutes):
 * const ops = operationsHandler(broker)
 * for (const path of ['/metrics', '/healthz', '/readyz']) {
 *   fastify.get(path, (req, reply) => { reply.hijack(); ops(req.raw, reply.raw) })
 * }
 * // Fastify under a prefix: req.raw.url keeps it, so tell the handler.
 * fastify.register(async (scope) => {
 *   const ops = operationsHandler(broker, { prefix: '/ops' })
 *   scope.all('/*', (req, reply) => { reply.hijack(); ops(req.raw, reply.raw) })
 * }, { prefix: '/ops' })
 * // node:http:
 * http.createServer(operationsHandler(broker)).listen(9100)
 * ```
 */
export function operationsHandler(broker: OperationsSource, options: OperationsHandlerOptions = {}): OperationsHandler {
  const metrics = options.metrics ?? true
  const health = options.health ?? true
  const prefix = (options.prefix ?? '').replace(/\/+$/, '')
  return (req, res, next) => {
    const path = routePath(req.url ?? '/', prefix)
    const served = (metrics && path === '/metrics') || (health && (path === '/healthz' || path === '/readyz'))
    if (!served) {
      if (next !== undefined) next()
      else send(req, res, 404, 'text/plain; charset=utf-8', 'Not Found\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(req, res, 405, 'text/plain; charset=utf-8', 'Method Not Allowed\n', { Allow: ALLOW })
      return
    }
    try {
      if (path === '/metrics') {
        send(req, res, 200, PROMETHEUS_CONTENT_TYPE, prometheusText(broker.stats(), broker.health()))
        return
      }
      const h = broker.health()
      const figures = { alive: h.alive, ready: h.ready, draining: h.draining, eventLoopDelayMs: h.eventLoopDelayMs }
      if (path === '/healthz') {
        if (h.alive) sendJson(req, res, 200, { status: 'ok', ...figures })
        else sendJson(req, res, 503, { status: 'unhealthy', reason: 'event_loop_stalled', ...figures })
        return
      }
      if (h.ready) sendJson(req, res, 200, { status: 'ready', ...figures })
      else sendJson(req, res, 503, { status: 'not_ready', ...notReadyReason(h), ...figures })
    } catch (error) {
      log.error('operations endpoint %s failed: %O', path, error)
      if (res.headersSent) {
        res.destroy(error instanceof Error ? error : undefined)
        return
      }
      send(req, res, 500, 'text/plain; charset=utf-8', 'Internal Server Error\n')
    }
  }
}
