import { lstat, rm } from 'node:fs/promises'
import net from 'node:net'
import { log } from '../logging.js'
import { closeServer, listenPath } from './bind.js'
import { admitSocket } from './proxy-protocol.js'
import type { Transport } from './transport.js'

/** Options of the `unix` transport. */
export interface UnixOptions {
  /** The socket file; a stale socket left by a crashed process is replaced (any other file is left alone, and listening fails). */
  path: string
}

/** MQTT over a unix domain socket, for clients on the same machine. */
export function unix(options: UnixOptions): Transport {
  return {
    name: 'unix',
    listen: async (onConnection, context) => {
      const server = net.createServer((socket) => {
        // The peer has no address, only the socket's path: bans and per-IP limits let it through,
        // but the host's `acceptConnection` hook still sees it.
        if (!admitSocket(context, { remoteAddress: options.path, remotePort: undefined, transport: 'unix' }, socket)) {
          socket.destroy()
          return
        }
        onConnection(socket, { remoteAddress: options.path, transport: 'unix' })
      })
      await removeStaleSocket(options.path)
      await listenPath(server, options.path)
      log.broker('Listening on unix %s', options.path)
      return { address: () => server.address(), close: () => closeServer(server) }
    },
  }
}

/** Removes a socket file left behind by an earlier process; never a regular file or a directory. */
async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch(() => undefined)
  if (stat?.isSocket()) await rm(path, { force: true })
}
