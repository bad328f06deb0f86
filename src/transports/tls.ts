import nodeTls from 'node:tls'
import { log } from '../logging.js'
import { closeServer, listenDualStack } from './bind.js'
import type { Listener, Transport } from './transport.js'

/** Options of the `tls` transport: Node's TLS server options (key, cert, ca, requestCert ...) plus where to listen. */
export interface TlsOptions extends nodeTls.TlsOptions {
  /** Port to listen on; 0 picks a free one. Default 8883. */
  port?: number
  /** Address to bind; default all IPv4 and IPv6 addresses. */
  host?: string
}

/**
 * MQTT over TLS. With `requestCert` (and `ca`), a client certificate's subject and fingerprint
 * reach the `authenticate` hook as `certificate`, so devices can be authenticated by certificate.
 */
export function tls(options: TlsOptions): Transport {
  return {
    name: 'tls',
    listen: async (onConnection) => {
      const { port, host, ...tlsOptions } = options
      const server = nodeTls.createServer(tlsOptions, (socket) => {
        socket.setNoDelay(true)
        const peer = socket.getPeerCertificate()
        const certificate =
          peer !== null && typeof peer === 'object' && peer.fingerprint256 !== undefined && socket.authorized
            ? { subject: peer.subject, fingerprint256: peer.fingerprint256 }
            : undefined
        onConnection(socket, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, certificate })
      })
      server.on('tlsClientError', (error) => log.client('TLS handshake failed: %s', error.message))
      await listenDualStack(server, port ?? 8883, host)
      log.broker('Listening on tls %j', server.address())
      const listener: Listener = { address: () => server.address(), close: () => closeServer(server) }
      return listener
    },
  }
}
