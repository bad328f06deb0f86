import net from 'node:net'
import nodeTls from 'node:tls'
import type { ConnectionInfo } from '../connection/connection.js'
import { log } from '../logging.js'
import { closeServer, listenDualStack } from './bind.js'
import { readProxyHeader, trustedSet, type ProxyProtocolOptions } from './proxy-protocol.js'
import type { Transport } from './transport.js'

/** Options of the `tls` transport: Node's TLS server options (key, cert, ca, requestCert ...) plus where to listen. */
export interface TlsOptions extends nodeTls.TlsOptions, ProxyProtocolOptions {
  /** Port to listen on; 0 picks a free one. Default 8883. */
  port?: number
  /** Address to bind; default all IPv4 and IPv6 addresses. */
  host?: string
}

/**
 * MQTT over TLS. With `requestCert` (and `ca`), a client certificate's subject and fingerprint
 * reach the `authenticate` hook as `certificate`, so devices can be authenticated by certificate.
 * With `proxyProtocol`, the PROXY header, sent in clear before the TLS handshake, is read first.
 */
export function tls(options: TlsOptions): Transport {
  return {
    name: 'tls',
    listen: async (onConnection) => {
      const { port, host, proxyProtocol, trustedProxies, ...tlsOptions } = options
      // Where each connection really comes from, by the socket's own "address:port", for
      // connections that came through a PROXY header.
      const origins = new Map<string, ConnectionInfo>()
      const key = (address: string | undefined, port: number | undefined): string => `${address}:${port}`
      const server = nodeTls.createServer(tlsOptions, (socket) => {
        socket.setNoDelay(true)
        const peer = socket.getPeerCertificate()
        const certificate =
          peer !== null && typeof peer === 'object' && peer.fingerprint256 !== undefined && socket.authorized
            ? { subject: peer.subject, fingerprint256: peer.fingerprint256 }
            : undefined
        const k = key(socket.remoteAddress, socket.remotePort)
        const origin = origins.get(k) ?? { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }
        origins.delete(k)
        onConnection(socket, { ...origin, certificate, transport: 'tls' })
      })
      server.on('tlsClientError', (error, socket) => log.client('tls: handshake failed from %s: %s', socket.remoteAddress, error.message))
      if (!proxyProtocol) {
        await listenDualStack(server, port ?? 8883, host)
        log.broker('Listening on tls %j', server.address())
        return { address: () => server.address(), close: () => closeServer(server) }
      }
      // Behind a proxy: a plain TCP server reads the header, then hands the socket (with the
      // bytes read past the header put back) to the TLS server, which never listens itself.
      const trusted = trustedSet(trustedProxies)
      const front = net.createServer((raw) => {
        readProxyHeader(raw, trusted).then(
          (real) => {
            if (real !== null) {
              const k = key(raw.remoteAddress, raw.remotePort)
              origins.set(k, real)
              raw.once('close', () => origins.delete(k))
            }
            server.emit('connection', raw)
          },
          (error: Error) => {
            log.client('tls: refusing a connection from %s: %s', raw.remoteAddress, error.message)
            raw.destroy()
          },
        )
      })
      await listenDualStack(front, port ?? 8883, host)
      log.broker('Listening on tls (PROXY protocol) %j', front.address())
      return { address: () => front.address(), close: () => closeServer(front) }
    },
  }
}
