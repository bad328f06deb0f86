/**
 * The configuration's listeners as transports, their TLS files read at start, and the line each
 * prints once listening: where, and its security posture (who may connect, whether it is TLS).
 */
import { readFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import nodeTls from 'node:tls'
import { closeServer, listenDualStack } from '../transports/bind.js'
import { tcp } from '../transports/tcp.js'
import { tls } from '../transports/tls.js'
import type { Transport } from '../transports/transport.js'
import { unix } from '../transports/unix.js'
import { requestPath } from '../transports/upgrades.js'
import { websocket } from '../transports/websocket.js'
import { isPem } from './config/resolve.js'
import type { AuthConfig, CulexConfig, ListenerConfig, TlsConfig } from './config/schema.js'
import { StartupError } from './errors.js'

/** A listener ready to start. */
export interface ListenerPlan {
  /** `listeners[1]`, for error messages. */
  name: string
  config: ListenerConfig
  transport: Transport
}

/**
 * A reader of the TLS files of `<name>.tls`: a path is read now, PEM text is taken as it is; a
 * file that cannot be read throws a StartupError naming the key.
 */
export function tlsFileLoader(name: string): (value: string, key: string) => Buffer {
  return (value, key) => {
    if (isPem(value)) return Buffer.from(value)
    try {
      return readFileSync(value)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (error as Error).message
      throw new StartupError(`${name}.tls.${key}: cannot read ${value}: ${why}`)
    }
  }
}

/** Node's TLS options from the configuration, the files read now; a file that cannot be read, or keys that do not fit, throw naming them. */
export function readTls(config: TlsConfig, name: string): nodeTls.TlsOptions {
  const load = tlsFileLoader(name)
  const options: nodeTls.TlsOptions = {
    cert: load(config.cert, 'cert'),
    key: load(config.key, 'key'),
    requestCert: config.requestCert,
    rejectUnauthorized: config.rejectUnauthorized,
  }
  if (config.ca !== undefined) options.ca = Array.isArray(config.ca) ? config.ca.map((ca, i) => load(ca, `ca[${i}]`)) : load(config.ca, 'ca')
  if (config.passphrase !== undefined) options.passphrase = config.passphrase
  if (config.minVersion !== undefined) options.minVersion = config.minVersion
  if (config.ciphers !== undefined) options.ciphers = config.ciphers
  try {
    // What the TLS server would do at start: a key that does not match, a wrong passphrase ...
    nodeTls.createSecureContext(options)
  } catch (error) {
    throw new StartupError(`${name}.tls: ${(error as Error).message} (cert ${describeFile(config.cert)}, key ${describeFile(config.key)})`)
  }
  return options
}

function describeFile(value: string): string {
  return isPem(value) ? 'given as PEM text' : value
}

/** The transports of the configuration's listeners, TLS files read. */
export function planListeners(config: CulexConfig): ListenerPlan[] {
  return config.listeners.map((listener, i) => planListener(listener, `listeners[${i}]`))
}

/** One listener's transport, its TLS files read; `name` is `listeners[i]`, for errors. */
export function planListener(listener: ListenerConfig, name: string): ListenerPlan {
  return { name, config: listener, transport: transportOf(listener, name) }
}

function transportOf(listener: ListenerConfig, name: string): Transport {
  switch (listener.type) {
    case 'tcp':
      return tcp({
        port: listener.port,
        host: listener.host,
        backlog: listener.backlog,
        proxyProtocol: listener.proxyProtocol,
        trustedProxies: listener.trustedProxies,
      })
    case 'tls':
      return tls({
        ...readTls(listener.tls, name),
        port: listener.port,
        host: listener.host,
        proxyProtocol: listener.proxyProtocol,
        trustedProxies: listener.trustedProxies,
      })
    case 'ws':
      return websocket({ port: listener.port, host: listener.host, path: listener.path, trustedProxies: listener.trustedProxies })
    case 'wss':
      return secureWebSocket(readTls(listener.tls, name), listener.port, listener.host, listener.path, listener.trustedProxies)
    case 'unix':
      return unix({ path: listener.path })
  }
}

/**
 * WebSocket over TLS on its own port: `websocket` serves its own port in clear only, so this is
 * an HTTPS server of our own with the transport attached to it (`{ server }`), answering other
 * requests as the transport's own port does (426 at the MQTT path, 404 elsewhere).
 */
function secureWebSocket(tlsOptions: nodeTls.TlsOptions, port: number, host: string | undefined, path: string, trustedProxies: string[] | undefined): Transport {
  return {
    name: 'wss',
    listen: async (onConnection, context) => {
      const server = https.createServer(tlsOptions, (request, response) => {
        if (requestPath(request.url) === path) {
          response.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('MQTT over WebSocket: upgrade required\n')
        } else {
          response.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n')
        }
      })
      const attached = await websocket({ server, path, trustedProxies }).listen(onConnection, context)
      try {
        await listenDualStack(server, port, host)
      } catch (error) {
        await attached.close()
        throw error
      }
      return {
        address: () => server.address(),
        close: async () => {
          await attached.close()
          const closed = closeServer(server)
          // Keep-alive HTTPS connections (not upgraded) would hold the close.
          server.closeIdleConnections()
          await closed
        },
      }
    },
  }
}

/** `mqtt://[::]:1883`, `wss://127.0.0.1:8081/mqtt`, `unix:/run/culex.sock`. */
export function listenerUrl(listener: ListenerConfig, address: AddressInfo | string | null): string {
  if (listener.type === 'unix') return `unix:${typeof address === 'string' ? address : listener.path}`
  if (address === null || typeof address === 'string') return String(address)
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const scheme = { tcp: 'mqtt', tls: 'mqtts', ws: 'ws', wss: 'wss' }[listener.type]
  const path = listener.type === 'ws' || listener.type === 'wss' ? listener.path : ''
  return `${scheme}://${host}:${address.port}${path}`
}

/** Who may connect: `anonymous clients allowed`, `password file, ACL file, anonymous refused`. */
export function authPosture(auth: AuthConfig | undefined): string {
  if (auth === undefined) return 'anonymous clients allowed'
  const parts: string[] = []
  if (auth.passwordFile !== undefined) parts.push('password file')
  if (auth.aclFile !== undefined) parts.push('ACL file')
  const anonymous = auth.allowAnonymous ?? auth.passwordFile === undefined
  if (parts.length === 0) return anonymous ? 'anonymous clients allowed' : 'anonymous refused, no password file: no client can connect'
  parts.push(anonymous ? 'anonymous allowed' : 'anonymous refused')
  return parts.join(', ')
}

/** Whether the listener is encrypted, and whether it asks for client certificates. */
export function tlsPosture(listener: ListenerConfig): string {
  if (listener.type === 'unix') return 'local socket, no TLS'
  if (listener.type === 'tcp' || listener.type === 'ws') return 'no TLS'
  if (!listener.tls.requestCert) return 'TLS'
  return listener.tls.rejectUnauthorized ? 'TLS, client certificates required' : 'TLS, client certificates optional'
}

/** What the listener is: `tcp`, `ws /mqtt`, with what the address means. */
function kindOf(listener: ListenerConfig, address: AddressInfo | string | null): string {
  const parts = [listener.type === 'ws' || listener.type === 'wss' ? `${listener.type} ${listener.path}` : listener.type]
  if ((listener.type === 'tcp' || listener.type === 'tls') && listener.proxyProtocol) parts.push('PROXY protocol')
  if (address !== null && typeof address === 'object') {
    if (address.address === '::') parts.push('all IPv4 and IPv6 addresses')
    else if (address.address === '0.0.0.0') parts.push('all IPv4 addresses')
  }
  return parts.join(', ')
}

/** The line printed once the listener listens: `mqtt://[::]:1883 (tcp, all IPv4 and IPv6 addresses; anonymous clients allowed; no TLS)`. */
export function describeListener(listener: ListenerConfig, address: AddressInfo | string | null, auth: AuthConfig | undefined): string {
  return `${listenerUrl(listener, address)} (${kindOf(listener, address)}; ${authPosture(auth)}; ${tlsPosture(listener)})`
}
