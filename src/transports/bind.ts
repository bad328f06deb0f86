import type net from 'node:net'

/**
 * Starts `server` listening. Without a host it binds '::', which on a dual-stack machine accepts
 * IPv4 and IPv6; where IPv6 is unavailable it falls back to '0.0.0.0'.
 */
export async function listenDualStack(server: net.Server, port: number, host: string | undefined, backlog?: number): Promise<void> {
  try {
    await bind(server, { port, host: host ?? '::', backlog })
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (host !== undefined || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) throw error
    await bind(server, { port, host: '0.0.0.0', backlog })
  }
}

/** Starts `server` on a unix domain socket path. */
export function listenPath(server: net.Server, path: string): Promise<void> {
  return bind(server, { path })
}

function bind(server: net.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error): void => reject(error)
    server.once('error', onError)
    server.listen(options, () => {
      server.off('error', onError)
      resolve()
    })
  })
}

/** Stops accepting; resolves once the server has closed (its connections are the broker's to end). */
export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
  })
}
