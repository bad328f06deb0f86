import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { ConnectionInfo } from '../connection/connection.js'

/** Hands a transport's new connection to the broker. */
export type ConnectionHandler = (stream: Duplex, info: ConnectionInfo) => void

/** Something that accepts connections: `broker.listen(transport)` starts it. */
export interface Transport {
  /** A short name for log lines ('tcp', 'tls', 'ws' ...). */
  readonly name: string
  listen(onConnection: ConnectionHandler): Promise<Listener>
}

/** A started transport. */
export interface Listener {
  /** Where it listens: a TCP address, a path for unix sockets, or null once closed. */
  address(): AddressInfo | string | null
  /** Stops accepting connections. Open connections are the broker's to close. */
  close(): Promise<void>
}
