import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ConnectionInfo } from '../connection/connection.js'
import type { AcceptRequest } from '../hooks/types.js'

/** Hands a transport's new connection to the broker. */
export type ConnectionHandler = (stream: Duplex, info: ConnectionInfo) => void

/** What the broker tells a transport when it starts it. */
export interface ListenContext {
  /**
   * The broker's `limits.maxPacketSize`: a transport that frames its own messages (WebSocket)
   * must not buffer a frame larger than this before the broker sees it.
   */
  readonly maxPacketSize: number
  /**
   * Asks the broker whether to serve a new connection, once per connection, before any TLS
   * handshake or WebSocket upgrade: for a peer that is not a trusted proxy, before a byte is read;
   * for a trusted proxy, once its PROXY header (or X-Forwarded-For) names the real peer, so the
   * proxy itself never counts against per-IP limits. False means destroy the socket at once. The broker watches `socket`'s 'close' to
   * count each address's open connections. Bans, per-IP limits and the `acceptConnection` hook
   * run here. A transport that does not call it serves every connection.
   */
  admit?(request: AcceptRequest, socket: { once(event: 'close', listener: () => void): unknown }): boolean
}

/** Something that accepts connections: `broker.listen(transport)` starts it. */
export interface Transport {
  /** A short name for log lines ('tcp', 'tls', 'ws' ...). */
  readonly name: string
  listen(onConnection: ConnectionHandler, context: ListenContext): Promise<Listener>
}

/** A started transport. */
export interface Listener {
  /** Where it listens: a TCP address, a path for unix sockets, or null once closed. */
  address(): AddressInfo | string | null
  /** Stops accepting connections. Open connections are the broker's to close. */
  close(): Promise<void>
}
