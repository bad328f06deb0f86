/**
 * A small `node:http` server for the operations endpoints, for hosts without a web framework and
 * for the CLI's `--http-port`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { operationsHandler, type OperationsHandlerOptions, type OperationsSource } from './handler.js'

/** Options of {@link startOperationsServer}: where to listen, and which endpoints to serve. */
export interface OperationsServerOptions extends OperationsHandlerOptions {
  /** TCP port; 0 picks a free one (read it from `address().port`). */
  port: number
  /**
   * Address to bind. Default `'127.0.0.1'`: the endpoints have no authentication, so exposing
   * them beyond this machine is a choice (`'0.0.0.0'` or `'::'` for every interface, as a
   * Prometheus server or a Kubernetes probe on another host needs).
   */
  host?: string
  /** Serves the paths the operations handler does not (the CLI puts the dashboard there); absent: 404. */
  fallback?: (req: IncomingMessage, res: ServerResponse) => void
}

/** A running operations server. */
export interface OperationsServer {
  /** The address it listens on (still answers once closed). */
  address(): AddressInfo
  /**
   * Stops listening and closes every connection, idle keep-alive ones included, so it never
   * waits for a scraper to hang up. Calling it again returns the same promise.
   */
  close(): Promise<void>
}

/**
 * Starts a `node:http` server serving {@link operationsHandler} (`/metrics`, `/healthz`,
 * `/readyz`); every other path gets 404. Resolves once listening; rejects if it cannot bind.
 *
 * ```ts
 * const ops = await startOperationsServer(broker, { port: 9100, host: '0.0.0.0' })
 * // ... later
 * await ops.close()
 * ```
 */
export async function startOperationsServer(broker: OperationsSource, options: OperationsServerOptions): Promise<OperationsServer> {
  const { port, host = '127.0.0.1', fallback, ...handlerOptions } = options
  const handler = operationsHandler(broker, handlerOptions)
  const server: Server = createServer((req, res) => handler(req, res, fallback === undefined ? undefined : () => fallback(req, res)))
  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error): void => reject(error)
    server.once('error', failed)
    server.listen(port, host, () => {
      server.off('error', failed)
      resolve()
    })
  })
  // Kept: server.address() is null once closed.
  const address = server.address() as AddressInfo
  let closing: Promise<void> | undefined
  return {
    address: () => address,
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)))
        // Idle keep-alive sockets, and those in the middle of a request: a scrape is cheap to retry.
        server.closeAllConnections()
      })
      return closing
    },
  }
}
