import http from 'node:http'
import type https from 'node:https'
import nodeTls from 'node:tls'
import type { Duplex } from 'node:stream'
import { createWebSocketStream, WebSocketServer, type WebSocket } from 'ws'
import type { ConnectionInfo } from '../connection/connection.js'
import { log } from '../logging.js'
import { closeServer, listenDualStack } from './bind.js'
import { forwardedClient } from './forwarded.js'
import { admitSocket, trustedSet } from './proxy-protocol.js'
import type { ConnectionHandler, ListenContext, Listener, Transport } from './transport.js'
import { isEncrypted, refuseUpgrade, requestPath, routeUpgrades, type HttpServer } from './upgrades.js'

/**
 * Options of the `websocket` transport: its own port (`{ port, host, path }`), or a path on the
 * host's HTTP(S) server (`{ server, path }`). Either way:
 * - `path`: where MQTT is served, default '/mqtt' (the query string is not part of it);
 * - `trustedProxies`: addresses of reverse proxies (nginx, a load balancer) whose
 *   `X-Forwarded-For` header is believed. Only a connection whose peer is in this list gets its
 *   `remoteAddress` from the header: the right-most address in it that is not itself a trusted
 *   proxy (its `remotePort` is then unknown). Any other peer's header is ignored.
 */
export type WebSocketOptions =
  | { port?: number; host?: string; path?: string; server?: undefined; trustedProxies?: string[] }
  | { server: http.Server | https.Server; path?: string; trustedProxies?: string[] }

/** The subprotocols MQTT clients ask for: 'mqtt' (3.1.1, 5), 'mqttv3.1'. */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1']

/** How often an attachment with open connections checks whether the host server still listens. */
const HOST_WATCH_MS = 250
/** How long a client told "going away" (1001) has to answer the close before its socket is cut. */
const GOING_AWAY_GRACE_MS = 1000

/**
 * MQTT over WebSocket (binary frames; a packet may span frames and a frame may hold several
 * packets, since the broker reads the frames as one byte stream; a frame larger than the broker's
 * `maxPacketSize` is refused with close code 1009 before it is read). With `{ server }` it
 * attaches to the host application's existing HTTP or HTTPS server (Express, Fastify ...) and
 * serves only upgrades for its `path`; every other route stays the host's, and so does every
 * other upgrade when the host listens for upgrades itself (otherwise they are answered 404).
 * `authenticate` receives the upgrade request (cookies, `Authorization`, `?token=`).
 */
export function websocket(options: WebSocketOptions = {}): Transport {
  const secure = options.server instanceof nodeTls.Server
  return {
    name: secure ? 'wss' : 'ws',
    listen: (onConnection, context) =>
      options.server ? attach(options.server, options, context, onConnection, true) : ownPort(options, context, onConnection),
  }
}

/** Where the connection comes from: the socket's peer, or a trusted proxy's X-Forwarded-For. */
function origin(request: http.IncomingMessage, trusted: ReadonlySet<string>): ConnectionInfo {
  const socket = request.socket
  if (trusted.size > 0) {
    const header = request.headers['x-forwarded-for']
    const forwarded = forwardedClient(socket.remoteAddress, Array.isArray(header) ? header.join(',') : header, trusted)
    if (forwarded !== undefined) return { remoteAddress: forwarded, remotePort: undefined }
  }
  return { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }
}

/** Ends a WebSocket with 1001 (going away), cutting the socket if the peer does not answer. */
function goAway(ws: WebSocket): void {
  ws.close(1001, 'server closing')
  setTimeout(() => ws.terminate(), GOING_AWAY_GRACE_MS).unref()
}

async function attach(
  server: HttpServer,
  options: { path?: string; trustedProxies?: string[] },
  context: ListenContext,
  onConnection: ConnectionHandler,
  watchHost: boolean,
): Promise<Listener> {
  const path = options.path ?? '/mqtt'
  const scheme = server instanceof nodeTls.Server ? 'wss' : 'ws'
  const trusted = trustedSet(options.trustedProxies)
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    // ws would otherwise buffer frames of up to 100 MiB before the broker saw a byte.
    maxPayload: context.maxPacketSize,
    // Prefer 'mqtt'; a client offering none is still served.
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  })

  // Upgraded sockets keep the host's server.close() from completing, and Node says nothing when
  // it is called; but `server.listening` turns false at once. So while this attachment has
  // connections it checks that flag, and when the host server stops listening it closes them
  // (1001, going away), letting the host's shutdown finish whatever order it closes things in.
  const watched = new Set<WebSocket>()
  let watch: NodeJS.Timeout | undefined
  const stopWatch = (): void => {
    clearInterval(watch)
    watch = undefined
  }
  const checkHost = (): void => {
    if (watched.size > 0 && server.listening) return
    if (watched.size > 0) {
      log.broker('%s: the host server stopped listening; closing its %d WebSocket connection(s) at %s', scheme, watched.size, path)
      for (const ws of watched) goAway(ws)
      watched.clear()
    }
    stopWatch()
  }

  const unroute = routeUpgrades(server, path, (request, socket, head) => {
    const from = origin(request, trusted)
    const transport = isEncrypted(request) ? 'wss' : 'ws'
    // Admission (bans, per-IP limits, the host's hook) before the upgrade, by the address a
    // trusted proxy forwarded; only MQTT upgrades are admitted, the host's other routes are its
    // own. A refusal is answered 403 rather than a bare reset: ws and browser clients then report
    // "Unexpected server response: 403" instead of a network error, and the socket is closed once
    // the answer is written.
    if (!admitSocket(context, { remoteAddress: from.remoteAddress, remotePort: from.remotePort, transport }, socket)) {
      if (!socket.destroyed) refuseUpgrade(socket, 403)
      return
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      const stream: Duplex = createWebSocketStream(ws)
      stream.on('error', () => {})
      // A server that never listened (fed connections by hand) is not watched: "not listening"
      // would not mean "closing" there.
      if (watchHost && server.listening) {
        watched.add(ws)
        ws.once('close', () => watched.delete(ws))
        if (watch === undefined) {
          watch = setInterval(checkHost, HOST_WATCH_MS)
          watch.unref()
        }
      }
      onConnection(stream, { ...from, transport, request })
    })
  })
  if (watchHost) log.broker('Listening on %s at %s on the host server %j', scheme, path, server.address())
  return {
    address: () => server.address(),
    close: async () => {
      unroute()
      stopWatch()
      watched.clear()
      // Open connections are the broker's to close; this stops the handshakes in progress.
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}

async function ownPort(options: { port?: number; host?: string; path?: string; trustedProxies?: string[] }, context: ListenContext, onConnection: ConnectionHandler): Promise<Listener> {
  const path = options.path ?? '/mqtt'
  const server = http.createServer((request, response) => {
    if (requestPath(request.url) === path) {
      response.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('MQTT over WebSocket: upgrade required\n')
    } else {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n')
    }
  })
  const listener = await attach(server, options, context, onConnection, false)
  try {
    await listenDualStack(server, options.port ?? 8080, options.host)
  } catch (error) {
    await listener.close()
    throw error
  }
  log.broker('Listening on ws %j at %s', server.address(), path)
  return {
    address: () => server.address(),
    close: async () => {
      await listener.close()
      await closeServer(server)
    },
  }
}
