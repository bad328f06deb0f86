import net from 'node:net'
import nodeTls from 'node:tls'
import type { ConnectionInfo } from '../connection/connection.js'
import { log } from '../logging.js'
import { closeServer, listenDualStack } from './bind.js'
import { acceptSocket, trustedSet, type ProxyProtocolOptions } from './proxy-protocol.js'
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
 * Each new socket goes through the broker's admission (bans, per-IP limits, the
 * `acceptConnection` hook) before the handshake, which costs the server far more than the client.
 * With `proxyProtocol`, the PROXY header, sent in clear before the TLS handshake, is read first.
 */
export function tls(options: TlsOptions): Transport {
  return {
    name: 'tls',
    listen: async (onConnection, context) => {
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
      // The TLS server never listens itself: a plain TCP server accepts, admits the socket (and
      // reads the PROXY header, if any) and only then hands it to the TLS server, so a refused
      // socket never costs a handshake. It takes the net-level options (allowHalfOpen,
      // keepAlive ...) the TLS server would have applied when accepting.
      const trusted = trustedSet(trustedProxies)
      const front = net.createServer(tlsOptions, (raw) => {
        acceptSocket(raw, 'tls', context, proxyProtocol, trusted, (origin) => {
          if (origin.remoteAddress !== raw.remoteAddress || origin.remotePort !== raw.remotePort) {
            const k = key(raw.remoteAddress, raw.remotePort)
            origins.set(k, { remoteAddress: origin.remoteAddress, remotePort: origin.remotePort })
            raw.once('close', () => origins.delete(k))
          }
          server.emit('connection', raw)
        })
      })
      await listenDualStack(front, port ?? 8883, host)
      log.broker(proxyProtocol ? 'Listening on tls (PROXY protocol) %j' : 'Listening on tls %j', front.address())
      return { address: () => front.address(), close: () => closeServer(front) }
    },
  }
}
