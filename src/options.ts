import type {
  AcceptConnectionHook,
  AuthenticateHook,
  AuthorizeDeliverHook,
  AuthorizePublishHook,
  AuthorizeSubscribeHook,
  EnhancedAuthenticateHook,
} from './hooks/types.js'
import type { ClusterOptions } from './cluster/options.js'
import type { PersistenceAdapter } from './persistence/adapter.js'
import type { QoS } from './protocol/packets.js'

/** Resource limits. Every one has a safe default; see docs/embedding.md. */
export interface Limits {
  /** Open network connections at once; more are refused with CONNACK 3, server unavailable (MQTT 5: 0x97, quota exceeded). Default 10,000. */
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
  /** Messages queued per session (offline, or beyond maxInflight); more are dropped, once expired ones have made room. Default 1,000. */
  maxQueued: number
  /**
   * Bytes of queued messages (payload and topic) per session; a message that would pass it is
   * dropped, once expired ones have made room. Default 0: no limit besides maxQueued.
   */
  maxQueuedBytes: number
  /**
   * Seconds a persistent MQTT 3.1/3.1.1 session (clean session 0) outlives its connection, as
   * Mosquitto's `persistent_client_expiration`. Default 0xFFFFFFFF: it never expires, as the 3.1.1
   * specification says, so a client that changes its identifier leaves sessions behind.
   */
  persistentSessionExpiry: number
  /** Subscriptions one client may hold; more are refused with SUBACK 0x80 (MQTT 5: 0x97). Default 10,000. */
  maxSubscriptionsPerClient: number
  /**
   * Bytes waiting in a connection's write buffer beyond which QoS 0 messages to it are dropped
   * and its incoming packets are no longer read until the buffer is flushed, so a
   * client that does not read cannot grow the broker's memory. Default 4 MiB.
   */
  maxWriteBuffer: number
  /**
   * MQTT 5 Receive Maximum the broker advertises: QoS 1/2 PUBLISHes a client may have
   * unacknowledged towards the broker; one more is answered with DISCONNECT 0x93. Default 100.
   */
  receiveMaximum: number
  /** MQTT 5 Topic Alias Maximum the broker advertises and accepts. Default 10; 0 turns aliases off. */
  topicAliasMaximum: number
  /**
   * PUBLISH packets per second one client may send, with bursts of up to one second's worth; a
   * client going faster is disconnected (MQTT 5: DISCONNECT 0x96, Message rate too high).
   * Default 0: no limit.
   */
  maxPublishRate: number
  /** Longest MQTT 5 session expiry interval granted, in seconds; longer requests are cut to it. Default 0xFFFFFFFF (never expires). */
  maxSessionExpiryInterval: number
}

/**
 * What the broker offers, advertised to MQTT 5 clients in CONNACK and enforced for every client
 * (3.1/3.1.1 clients cannot be told: see each capability).
 */
export interface Capabilities {
  /**
   * Highest QoS accepted from clients and granted to subscriptions. Default 2. Above it, an MQTT 5
   * PUBLISH gets DISCONNECT 0x9B; a 3.1/3.1.1 PUBLISH closes the connection; a will is refused.
   */
  maximumQoS: QoS
  /**
   * Whether retained messages are kept. Default true. False refuses a retained PUBLISH (MQTT 5:
   * DISCONNECT 0x9A; 3.1/3.1.1: the connection closes), a retained will, and `broker.publish` with `retain`.
   */
  retainAvailable: boolean
  /** Whether filters may hold '+' or '#'. Default true; false refuses them with 0xA2. */
  wildcardSubscriptionAvailable: boolean
  /** Whether SUBSCRIBE may carry a subscription identifier. Default true; false refuses with 0xA1. */
  subscriptionIdentifiersAvailable: boolean
  /** Whether '$share/{ShareName}/{filter}' subscriptions are served (to 3.1.1 clients too). Default true; false refuses them with 0x9E (0x80 for 3.1.1). */
  sharedSubscriptionAvailable: boolean
  /** Response Information sent to clients that ask for it (Request Response Information 1). Default: none. */
  responseInformation?: string
  /**
   * Whether a PUBLISH whose Payload Format Indicator says UTF-8 but whose payload is not is refused
   * (PUBACK/PUBREC 0x99 at QoS 1/2, DISCONNECT 0x99 at QoS 0). Default false: forwarded as is.
   */
  validatePayloadFormat: boolean
}

export const DEFAULT_CAPABILITIES: Readonly<Capabilities> = Object.freeze({
  maximumQoS: 2,
  retainAvailable: true,
  wildcardSubscriptionAvailable: true,
  subscriptionIdentifiersAvailable: true,
  sharedSubscriptionAvailable: true,
  validatePayloadFormat: false,
})

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxConnections: 10_000,
  maxPacketSize: 1024 * 1024,
  maxKeepAlive: 65_535,
  connectTimeoutMs: 10_000,
  maxInflight: 100,
  maxQueued: 1_000,
  maxQueuedBytes: 0,
  persistentSessionExpiry: 0xffffffff,
  maxSubscriptionsPerClient: 10_000,
  maxWriteBuffer: 4 * 1024 * 1024,
  receiveMaximum: 100,
  maxPublishRate: 0,
  topicAliasMaximum: 10,
  maxSessionExpiryInterval: 0xffffffff,
})

/** Options of the `$SYS/broker/...` tree. */
export interface SysOptions {
  /**
   * Seconds between refreshes, as Mosquitto's `sys_interval`; each topic is published (retained)
   * only when its value changed. Default 10; 0 publishes no $SYS topics.
   */
  interval?: number
}

/** A ban: connections matching it are refused until it expires. Give exactly one of `clientId`, `username`, `address`. */
export interface Ban {
  /** A client identifier: its CONNECT is refused (CONNACK 5 / MQTT 5: 0x8A Banned). */
  clientId?: string
  /** A user name: its CONNECT is refused as above. */
  username?: string
  /** An IPv4/IPv6 address or CIDR block (`10.0.0.0/8`): its sockets are closed at accept. */
  address?: string
  /** When the ban ends, ms since the epoch; absent: never (until `broker.unban`). */
  until?: number
  /** Why, for log lines and `broker.bans()`. */
  reason?: string
}

/** Flapping detection: a client that connects and drops too often is banned for a while. */
export interface FlappingOptions {
  /** Connections of one client identifier that may end within `windowMs`. Default 15. */
  maxDisconnects?: number
  /** Default 60,000 ms. */
  windowMs?: number
  /** How long the client identifier is banned once over. Default 300,000 ms. */
  banMs?: number
}

/** Limits against abusive clients, checked before TLS and CONNECT where they can be. */
export interface ProtectionOptions {
  /** Open connections one IP address may hold; more are closed at accept. Default 0: no limit. */
  maxConnectionsPerIp?: number
  /** New connections per second one IP address may open, with bursts of one second's worth; more are closed at accept. Default 0: no limit. */
  connectRatePerIp?: number
  /** Bans in force from the start (more with `broker.ban`). */
  bans?: Ban[]
  /** Flapping detection; absent or false: off. */
  flapping?: FlappingOptions | boolean
}

/** A pino-shaped logger: what the broker calls. `child` gets `{ clientId }` for lines about one client. */
export interface Logger {
  info(fields: object, message: string): void
  warn(fields: object, message: string): void
  error(fields: object, message: string): void
  debug(fields: object, message: string): void
  child(bindings: Record<string, unknown>): Logger
}

/** Options of `new Broker(options)`. All are optional. */
export interface BrokerOptions {
  /** Decides who may connect. Absent: everyone may. */
  authenticate?: AuthenticateHook
  /**
   * MQTT 5 enhanced authentication: called for clients whose CONNECT names an Authentication
   * Method, and for re-authentication. Absent: such clients are refused with 0x8C.
   */
  enhancedAuthenticate?: EnhancedAuthenticateHook
  /** Decides who may publish what. Absent: every publish is allowed. */
  authorizePublish?: AuthorizePublishHook
  /** Decides subscriptions. Absent: every valid subscription is granted. */
  authorizeSubscribe?: AuthorizeSubscribeHook
  /** Where sessions and retained messages are kept. Default: in memory. Not with `cluster`, which brings its own. */
  persistence?: PersistenceAdapter
  /**
   * Cluster mode: this broker is one node of several sharing one Redis, which behave as one
   * broker (cross-node delivery, session takeover, wills, shared subscriptions, retained
   * messages). Sets the store and the bus together: `persistence` must not be given. Needs the
   * `ioredis` package. See docs/cluster.md.
   */
  cluster?: ClusterOptions
  /**
   * Decides per delivered message (and per retained message) whether a client may receive it.
   * Absent: every matching subscriber gets it. See {@link AuthorizeDeliverHook}.
   */
  authorizeDeliver?: AuthorizeDeliverHook
  /** Decides at accept, before TLS or CONNECT, whether a connection is served. See {@link AcceptConnectionHook}. */
  acceptConnection?: AcceptConnectionHook
  /** Mosquitto-compatible `$SYS/broker/...` topics. Default: refreshed every 10 s. */
  sys?: SysOptions
  /** Limits against abusive clients: per-IP connection caps and rates, bans, flapping detection. Default: none. */
  protection?: ProtectionOptions
  /** Where the broker's log lines go, as well as `debug`: any pino-shaped logger (pino, Fastify's `app.log`, ...). */
  logger?: Logger
  /** Resource limits; unset ones take their defaults. */
  limits?: Partial<Limits>
  /** MQTT 5 capabilities; unset ones take their defaults. */
  capabilities?: Partial<Capabilities>
}
