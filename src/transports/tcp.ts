import net from 'node:net'
import { log } from '../logging.js'
import type { ConnectionHandler, Listener, Transport } from './transport.js'

/** Options of the `tcp` transport. */
export interface TcpOptions {
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
  const server = net.createServer((socket) => {
    // MQTT packets are small and latency matters; the connection corks its writes itself.
    socket.setNoDelay(true)
    onConnection(socket, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort })
  })
  const port = options.port ?? 1883
  const host = options.host
  try {
    await bind(server, port, host ?? '::', options.backlog)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (host !== undefined || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) throw error
    await bind(server, port, '0.0.0.0', options.backlog)
  }
  log.broker('Listening on tcp %j', server.address())
  return {
    address: () => server.address(),
    close: () =>
      new Promise<void>((resolve) => {
        if (!server.listening) return resolve()
        server.close(() => resolve())
      }),
  }
}

function bind(server: net.Server, port: number, host: string, backlog: number | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error)
    server.once('error', onError)
    server.listen({ port, host, backlog }, () => {
      server.off('error', onError)
      resolve()
    })
  })
}
