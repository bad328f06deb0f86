import type { DisconnectReason } from '../hooks/types.js'

/** Why a message was not delivered to a subscriber (or not accepted from a publisher). */
export type DropReason =
  /** The session's queue was full (`maxQueued`, `maxQueuedBytes`). */
  | 'queue_full'
  /** A QoS 0 message to a client whose write buffer was over `maxWriteBuffer`. */
  | 'write_buffer'
  /** A QoS 0 message to a persistent session without a connection. */
  | 'offline'
  /** Its Message Expiry Interval ran out while it waited. */
  | 'expired'
  /** `authorizePublish` refused it, or `authorizeDeliver` refused it to one subscriber. */
  | 'not_authorized'
  /** The publisher went over `maxPublishRate`. */
  | 'rate_limited'
  /** Larger than the subscriber's Maximum Packet Size. */
  | 'too_large'

export const DROP_REASONS: readonly DropReason[] = ['queue_full', 'write_buffer', 'offline', 'expired', 'not_authorized', 'rate_limited', 'too_large']

/** Every `DisconnectReason`, for metrics that list each with its count. */
export const DISCONNECT_REASONS: readonly DisconnectReason[] = [
  'disconnect', 'socket-closed', 'keep-alive-timeout', 'connect-timeout', 'protocol-error', 'hook-error', 'internal-error',
  'taken-over', 'server-closing', 'closed-by-host', 'connect-refused', 'persistence-error',
]

/** What an authentication or authorization denial was about. */
export type DenialKind = 'connect' | 'publish' | 'subscribe' | 'deliver'

/** Why a socket was refused before MQTT began (at accept, before TLS or CONNECT). */
export type SocketRefusal = 'max_connections' | 'per_ip_limit' | 'per_ip_rate' | 'banned' | 'host'

/** Packet type names by their MQTT type number (1..15). */
export const PACKET_TYPES = [
  '', 'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp',
  'subscribe', 'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth',
] as const

/** A packet type's name (`'publish'`, `'pingreq'`, ...). */
export type PacketTypeName = Exclude<(typeof PACKET_TYPES)[number], ''>

/**
 * The broker's running totals. The hot path only adds to plain numbers and typed arrays; they are
 * read when someone asks (`broker.stats()`, $SYS, `/metrics`), never pushed.
 */
export class Counters {
  /** Packets received and sent, by MQTT packet type number. */
  readonly packetsReceived = new Float64Array(16)
  readonly packetsSent = new Float64Array(16)
  /** Bytes received and sent, by packet type number; [0] holds bytes not attributed to a packet (WebSocket framing aside). */
  readonly bytesReceived = new Float64Array(16)
  readonly bytesSent = new Float64Array(16)
  /** Application messages (PUBLISH) received from clients and sent to them, by QoS. */
  readonly messagesReceived = new Float64Array(3)
  readonly messagesSent = new Float64Array(3)
  readonly dropped: Record<DropReason, number> = { queue_full: 0, write_buffer: 0, offline: 0, expired: 0, not_authorized: 0, rate_limited: 0, too_large: 0 }
  /** CONNACK codes sent, by code (0 = accepted). */
  readonly connects = new Map<number, number>()
  readonly disconnects: Partial<Record<DisconnectReason, number>> = {}
  readonly denied: Record<DenialKind, number> = { connect: 0, publish: 0, subscribe: 0, deliver: 0 }
  /** Sockets handed to the broker, and those refused before MQTT began, by reason. */
  socketsAccepted = 0
  readonly socketsRefused: Record<SocketRefusal, number> = { max_connections: 0, per_ip_limit: 0, per_ip_rate: 0, banned: 0, host: 0 }
  /** Persistent sessions that expired. */
  sessionsExpired = 0
  /** The most clients connected at once. */
  maxConnected = 0

  /** A packet of `type` (its MQTT type number) and `bytes` long went to a client; a PUBLISH also counts a message at its QoS. */
  sent(type: number, bytes: number): void {
    this.packetsSent[type] = (this.packetsSent[type] as number) + 1
    this.bytesSent[type] = (this.bytesSent[type] as number) + bytes
  }

  drop(reason: DropReason): void {
    this.dropped[reason]++
  }

  connack(code: number): void {
    this.connects.set(code, (this.connects.get(code) ?? 0) + 1)
  }

  disconnect(reason: DisconnectReason): void {
    this.disconnects[reason] = (this.disconnects[reason] ?? 0) + 1
  }
}
