import type { AuthenticateHook, AuthorizePublishHook, AuthorizeSubscribeHook } from './hooks/types.js'
import type { PersistenceAdapter } from './persistence/adapter.js'

/** Resource limits. Every one has a safe default; see docs/embedding.md. */
export interface Limits {
  /** Open network connections at once; more are refused with CONNACK 3 (server unavailable). Default 10,000. */
  maxConnections: number
  /** Largest packet accepted, in bytes, fixed header included; a larger one closes the connection. Default 1 MiB. */
  maxPacketSize: number
  /**
   * Largest keep alive a client may ask for, in seconds. A 3.1/3.1.1 client asking for more is
   * refused with CONNACK 2, as Mosquitto does, since it cannot be told a lower value. Default 65,535 (no limit).
   */
  maxKeepAlive: number
  /** Time a new connection has to send CONNECT before it is closed. Default 10,000 ms. */
  connectTimeoutMs: number
  /** Unacknowledged outgoing QoS 1/2 messages per client; more wait in the session queue. Default 100. */
  maxInflight: number
  /** Messages queued per session (offline, or beyond maxInflight); more are dropped and counted. Default 1,000. */
  maxQueued: number
  /** Subscriptions one client may hold; more are refused with SUBACK 0x80. Default 10,000. */
  maxSubscriptionsPerClient: number
  /**
   * Bytes waiting in a connection's write buffer beyond which QoS 0 messages to it are dropped
   * (and counted) and its incoming packets are no longer read until the buffer drains, so a
   * client that does not read cannot grow the broker's memory. Default 4 MiB.
   */
  maxWriteBuffer: number
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxConnections: 10_000,
  maxPacketSize: 1024 * 1024,
  maxKeepAlive: 65_535,
  connectTimeoutMs: 10_000,
  maxInflight: 100,
  maxQueued: 1_000,
  maxSubscriptionsPerClient: 10_000,
  maxWriteBuffer: 4 * 1024 * 1024,
})

/** Options of `new Broker(options)`. All are optional. */
export interface BrokerOptions {
  /** Decides who may connect. Absent: everyone may. */
  authenticate?: AuthenticateHook
  /** Decides who may publish what. Absent: every publish is allowed. */
  authorizePublish?: AuthorizePublishHook
  /** Decides subscriptions. Absent: every valid subscription is granted. */
  authorizeSubscribe?: AuthorizeSubscribeHook
  /** Where sessions and retained messages are kept. Default: in memory. */
  persistence?: PersistenceAdapter
  /** Resource limits; unset ones take their defaults. */
  limits?: Partial<Limits>
}
