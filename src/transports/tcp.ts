import net from 'node:net'
import { log } from '../logging.js'
import { closeServer, listenDualStack } from './bind.js'
import { readProxyHeader, trustedSet, type ProxyProtocolOptions } from './proxy-protocol.js'
import type { ConnectionHandler, Listener, Transport } from './transport.js'

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

/** Plain MQTT over TCP. */
export function tcp(options: TcpOptions = {}): Transport {
  return {
    name: 'tcp',
    listen: (onConnection) => listenTcp(options, onConnection),
  }
}

async function listenTcp(options: TcpOptions, onConnection: ConnectionHandler): Promise<Listener> {
  const trusted = trustedSet(options.trustedProxies)
  const server = net.createServer((socket) => {
    // MQTT packets are small and latency matters; the connection corks its writes itself.
    socket.setNoDelay(true)
    if (!options.proxyProtocol) {
      onConnection(socket, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, transport: 'tcp' })
      return
    }
    readProxyHeader(socket, trusted).then(
      (real) => onConnection(socket, { ...(real ?? { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }), transport: 'tcp' }),
      (error: Error) => {
        log.client('tcp: refusing a connection from %s: %s', socket.remoteAddress, error.message)
        socket.destroy()
      },
    )
  })
  await listenDualStack(server, options.port ?? 1883, options.host, options.backlog)
  log.broker('Listening on tcp %j', server.address())
  return {
    address: () => server.address(),
    close: () => closeServer(server),
  }
}
