import net from 'node:net'
import { log } from '../logging.js'
import { closeServer, listenDualStack } from './bind.js'
import { acceptSocket, trustedSet, type ProxyProtocolOptions } from './proxy-protocol.js'
import type { ConnectionHandler, ListenContext, Listener, Transport } from './transport.js'

/** Options of the `tcp` transport. */
export interface TcpOptions extends ProxyProtocolOptions {
  /** Port to listen on; 0 picks a free one (read it back from `listener.address()`). Default 1883. */
  port?: number
  /**
   * Address to bind. Default '::', which on a dual-stack host accepts IPv4 and IPv6; where IPv6
   * is unavailable the listener falls back to '0.0.0.0'.
   */
  host?: string
  /** Pending connection queue length handed to `listen`. */
  backlog?: number
}

/**
 * Plain MQTT over TCP. Each new socket goes through the broker's admission (bans, per-IP limits,
 * the `acceptConnection` hook) before a byte of it is read; with `proxyProtocol`, a trusted
 * proxy's connections once the PROXY header names the real client.
 */
export function tcp(options: TcpOptions = {}): Transport {
  return {
    name: 'tcp',
    listen: (onConnection, context) => listenTcp(options, onConnection, context),
  }
}

async function listenTcp(options: TcpOptions, onConnection: ConnectionHandler, context: ListenContext): Promise<Listener> {
  const trusted = trustedSet(options.trustedProxies)
  const server = net.createServer((socket) => {
    acceptSocket(socket, 'tcp', context, options.proxyProtocol, trusted, (origin) => {
      // MQTT packets are small and latency matters; the connection corks its writes itself.
      socket.setNoDelay(true)
      onConnection(socket, { ...origin, transport: 'tcp' })
    })
  })
  await listenDualStack(server, options.port ?? 1883, options.host, options.backlog)
  log.broker('Listening on tcp %j', server.address())
  return {
    address: () => server.address(),
    close: () => closeServer(server),
  }
}
