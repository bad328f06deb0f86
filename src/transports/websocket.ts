import http from 'node:http'
import type https from 'node:https'
import type { Duplex } from 'node:stream'
import { createWebSocketStream, WebSocketServer, type WebSocket } from 'ws'
import { log } from '../logging.js'
import { closeServer, listenDualStack } from './bind.js'
import type { ConnectionHandler, Listener, Transport } from './transport.js'

/** Options of the `websocket` transport: its own port, or a path on the host's HTTP(S) server. */
export type WebSocketOptions =
  | { port?: number; host?: string; path?: string; server?: undefined }
  | { server: http.Server | https.Server; path?: string }

/** The subprotocols MQTT clients ask for: 'mqtt' (3.1.1, 5), 'mqttv3.1'. */
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1']

/**
 * MQTT over WebSocket (binary frames; a packet may span frames and a frame may hold several
 * packets, since the broker reads the frames as one byte stream). With `{ server }` it attaches
 * to the host application's existing HTTP or HTTPS server (Express, Fastify ...) and answers only
 * upgrades for its `path` (default '/mqtt'), leaving every other route and upgrade to the host.
 */
export function websocket(options: WebSocketOptions = {}): Transport {
  return {
    name: 'ws',
    listen: (onConnection) => (options.server ? attach(options.server, options.path ?? '/mqtt', onConnection) : ownPort(options, onConnection)),
  }
}

function serve(wss: WebSocketServer, onConnection: ConnectionHandler): void {
  wss.on('connection', (ws: WebSocket, request: http.IncomingMessage) => {
    const stream: Duplex = createWebSocketStream(ws)
    stream.on('error', () => {})
    onConnection(stream, { remoteAddress: request.socket.remoteAddress, remotePort: request.socket.remotePort })
  })
}

function newServer(): WebSocketServer {
  return new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    // Prefer 'mqtt'; a client offering none is still served.
    handleProtocols: (offered) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  })
}

function pathOf(request: http.IncomingMessage): string {
  return new URL(request.url ?? '/', 'http://localhost').pathname
}

async function attach(server: http.Server | https.Server, path: string, onConnection: ConnectionHandler): Promise<Listener> {
  const wss = newServer()
  serve(wss, onConnection)
  const onUpgrade = (request: http.IncomingMessage, socket: Duplex, head: Buffer): void => {
    if (pathOf(request) !== path) return
    wss.handleUpgrade(request, socket, head, (ws) => wss.emit('connection', ws, request))
  }
  server.on('upgrade', onUpgrade)
  log.broker('MQTT over WebSocket on the host server at %s', path)
  return {
    address: () => server.address(),
    close: async () => {
      server.off('upgrade', onUpgrade)
      await new Promise<void>((resolve) => wss.close(() => resolve()))
    },
  }
}

async function ownPort(options: { port?: number; host?: string; path?: string }, onConnection: ConnectionHandler): Promise<Listener> {
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket: upgrade required\n')
  })
  const listener = await attach(server, options.path ?? '/mqtt', onConnection)
  await listenDualStack(server, options.port ?? 8080, options.host)
  log.broker('Listening on ws %j', server.address())
  return {
    address: () => server.address(),
    close: async () => {
      await listener.close()
      await closeServer(server)
    },
  }
}
