import http from 'node:http'
import type https from 'node:https'
import type { Duplex } from 'node:stream'
import { log } from '../logging.js'

/** Serves an HTTP upgrade request addressed to its path. */
export type UpgradeHandler = (request: http.IncomingMessage, socket: Duplex, head: Buffer) => void

/** An HTTP or HTTPS server whose 'upgrade' event carries WebSocket handshakes. */
export type HttpServer = http.Server | https.Server

interface Routes {
  readonly paths: Map<string, UpgradeHandler>
  readonly listener: UpgradeHandler
}

/** One 'upgrade' listener per server, whatever the number of paths (brokers) it serves. */
const routers = new WeakMap<HttpServer, Routes>()

/**
 * The path of a request target, without query or fragment: '/mqtt?token=1' is '/mqtt'. An
 * absolute-form target ('http://host/mqtt') gives its path. Undefined when the target is neither
 * (a malformed request).
 */
export function requestPath(target: string | undefined): string | undefined {
  if (target === undefined || target === '') return undefined
  if (target.startsWith('/')) {
    const end = target.search(/[?#]/)
    return end === -1 ? target : target.slice(0, end)
  }
  try {
    const url = new URL(target)
    return /^(http|https|ws|wss):$/.test(url.protocol) ? url.pathname : undefined
  } catch {
    return undefined
  }
}

/**
 * Answers an upgrade request that nobody serves with a plain HTTP error and closes the socket
 * once the answer is written (a socket left alone after 'upgrade' is never read again, so it
 * would otherwise stay open for good).
 */
export function refuseUpgrade(socket: Duplex, status: number): void {
  const reason = http.STATUS_CODES[status] ?? 'Error'
  const body = `${reason}\n`
  socket.on('error', () => {})
  socket.once('finish', () => socket.destroy())
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
}

/** Whether an upgrade request came over TLS ('wss'). */
export function isEncrypted(request: http.IncomingMessage): boolean {
  return 'encrypted' in request.socket && request.socket.encrypted === true
}

function dispatch(server: HttpServer, paths: Map<string, UpgradeHandler>, request: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  const path = requestPath(request.url)
  const handler = path === undefined ? undefined : paths.get(path)
  if (handler !== undefined) return handler(request, socket, head)
  // Another 'upgrade' listener (the host's own WebSocket routes) answers what is not ours.
  if (server.listenerCount('upgrade') > 1) return
  const status = path === undefined ? 400 : 404
  const name = isEncrypted(request) ? 'wss' : 'ws'
  log.client('%s: refusing an upgrade for %j from %s with HTTP %d: no WebSocket endpoint there', name, request.url, request.socket.remoteAddress, status)
  refuseUpgrade(socket, status)
}

/**
 * Routes the upgrades for `path` on `server` to `handler`, through one 'upgrade' listener per
 * server. Upgrades for a path nobody serves are answered 404 (400 for a malformed target) when
 * that listener is the server's only one, and left to the others otherwise. Returns the function
 * that removes the route (and the listener with the last route). Throws if `path` is taken.
 */
export function routeUpgrades(server: HttpServer, path: string, handler: UpgradeHandler): () => void {
  let routes = routers.get(server)
  if (routes === undefined) {
    const paths = new Map<string, UpgradeHandler>()
    const created: Routes = { paths, listener: (request, socket, head) => dispatch(server, paths, request, socket, head) }
    server.on('upgrade', created.listener)
    routers.set(server, created)
    routes = created
  }
  if (routes.paths.has(path)) throw new Error(`MQTT over WebSocket is already served at ${path} on this server`)
  routes.paths.set(path, handler)
  const own = routes
  return () => {
    if (own.paths.get(path) !== handler) return
    own.paths.delete(path)
    if (own.paths.size > 0) return
    server.off('upgrade', own.listener)
    routers.delete(server)
  }
}
