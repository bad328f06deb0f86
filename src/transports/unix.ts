import { rm } from 'node:fs/promises'
import net from 'node:net'
import { log } from '../logging.js'
import { closeServer, listenPath } from './bind.js'
import type { Transport } from './transport.js'

/** Options of the `unix` transport. */
export interface UnixOptions {
  /** The socket file; a stale one left by a crashed process is replaced. */
  path: string
}

/** MQTT over a unix domain socket, for clients on the same machine. */
export function unix(options: UnixOptions): Transport {
  return {
    name: 'unix',
    listen: async (onConnection) => {
      const server = net.createServer((socket) => onConnection(socket, { remoteAddress: options.path }))
      await rm(options.path, { force: true })
      await listenPath(server, options.path)
      log.broker('Listening on unix %s', options.path)
      return { address: () => server.address(), close: () => closeServer(server) }
    },
  }
}
