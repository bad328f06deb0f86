import { readFileSync } from 'node:fs'
import type { DisconnectReason } from '../hooks/types.js'
import type { DenialKind, DropReason, PacketTypeName, SocketRefusal } from './counters.js'

export type { DenialKind, DropReason, PacketTypeName, SocketRefusal } from './counters.js'

/** Culex's version, from its package.json (src/ and dist/ are both two levels below it). */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

/**
 * A snapshot of the broker's state and running totals, as `broker.stats()` returns it. $SYS,
 * `/metrics` and the dashboard all read this one snapshot. Totals count from the broker's start.
 */
export interface BrokerStats {
  /** When the snapshot was taken, ms since the epoch. */
  readonly time: number
  /** Culex's version. */
  readonly version: string
  /** In a cluster, this node's id (the snapshot is this node's). */
  readonly nodeId: string | undefined
  /** When the broker was created, ms since the epoch. */
  readonly startedAt: number
  readonly uptimeSeconds: number
  /** Network connections open now (CONNECT handshakes included), by transport name ('tcp', 'tls', 'ws', ...). */
  readonly connections: { readonly open: number; readonly byTransport: Readonly<Record<string, number>> }
  /**
   * Clients as Mosquitto's $SYS counts them: `connected` now; `maximum` at once since start;
   * `disconnected`: persistent sessions without a connection; `total`: both; `expired`: persistent
   * sessions that expired.
   */
  readonly clients: {
    readonly connected: number
    readonly maximum: number
    readonly disconnected: number
    readonly total: number
    readonly expired: number
  }
  /** Client subscriptions (one per client and filter) and how many of them are shared (`$share/...`). */
  readonly subscriptions: { readonly total: number; readonly shared: number }
  readonly retained: { readonly count: number }
  /** QoS 1/2 messages sent to clients and not acknowledged yet. */
  readonly inflight: number
  /** Messages waiting in session queues, and their bytes (payload and topic). */
  readonly queued: { readonly count: number; readonly bytes: number }
  /** Packets received from and sent to clients, by type. */
  readonly packets: { readonly received: Readonly<Record<PacketTypeName, number>>; readonly sent: Readonly<Record<PacketTypeName, number>> }
  /** Bytes received and sent, in all and by packet type. */
  readonly bytes: {
    readonly received: number
    readonly sent: number
    readonly receivedByType: Readonly<Record<PacketTypeName, number>>
    readonly sentByType: Readonly<Record<PacketTypeName, number>>
  }
  /** Application messages received from clients and sent to them, by QoS ([QoS 0, QoS 1, QoS 2]), and dropped, by reason. */
  readonly messages: {
    readonly received: readonly [number, number, number]
    readonly sent: readonly [number, number, number]
    readonly dropped: Readonly<Record<DropReason, number>>
  }
  /** CONNACKs sent, by code ('0' accepted; 3.1.1 return codes 1–5, MQTT 5 reason codes 128 and up). */
  readonly connects: Readonly<Record<string, number>>
  /** Connections of connected clients that ended, by reason. */
  readonly disconnects: Readonly<Record<DisconnectReason, number>>
  /** Authentication (`connect`) and authorization refusals. */
  readonly denied: Readonly<Record<DenialKind, number>>
  /** Sockets accepted, and refused before MQTT began (bans, per-IP limits, the `acceptConnection` hook). */
  readonly sockets: { readonly accepted: number; readonly refused: Readonly<Record<SocketRefusal, number>> }
  /** This process's memory: V8 heap in use, the most seen in a snapshot, and resident set size, in bytes. */
  readonly memory: { readonly heapUsed: number; readonly heapMaximum: number; readonly rss: number }
  /** The outgoing bridges (`broker.bridge`) running, by name, and whether each has its remote connected. */
  readonly bridges: ReadonlyArray<{ readonly name: string; readonly connected: boolean }>
  /** Whether the broker is ready (listening, stored state restored, not draining) and whether it is draining. */
  readonly ready: boolean
  readonly draining: boolean
}
