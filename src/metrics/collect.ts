import { getHeapStatistics } from 'node:v8'
import type { DisconnectReason } from '../hooks/types.js'
import type { Session } from '../session/session.js'
import { DISCONNECT_REASONS, PACKET_TYPES, type Counters, type PacketTypeName } from './counters.js'
import { VERSION, type BrokerStats } from './stats.js'

/** What a stats snapshot reads from the broker. */
export interface StatsSource {
  readonly counters: Counters
  readonly startedAt: number
  readonly nodeId: string | undefined
  readonly sessions: ReadonlyMap<string, Session>
  readonly connections: Iterable<{ readonly transport: string }>
  readonly connectionCount: number
  readonly connectedCount: number
  readonly retainedCount: number
  /** The outgoing bridges running and whether each is connected. */
  readonly bridges: ReadonlyArray<{ readonly name: string; readonly connected: boolean }>
}

function byType(values: Float64Array): Record<PacketTypeName, number> {
  const out = {} as Record<PacketTypeName, number>
  for (let i = 1; i < PACKET_TYPES.length; i++) out[PACKET_TYPES[i] as PacketTypeName] = values[i] as number
  return out
}

function sum(values: Float64Array): number {
  let total = 0
  for (const v of values) total += v
  return total
}

let heapMaximum = 0
let lastRss = 0

/**
 * The process's memory, without throwing: `process.memoryUsage()` reads /proc and fails with
 * EMFILE once a flood of sockets has used every file descriptor, which must not take a stats
 * reader (the $SYS timer, a scrape) down with it. The heap comes from V8; the RSS stays at its
 * last reading while it cannot be read.
 */
function memory(): { heapUsed: number; rss: number } {
  const heapUsed = getHeapStatistics().used_heap_size
  try {
    lastRss = process.memoryUsage.rss()
  } catch {
    // Kept from the last reading.
  }
  return { heapUsed, rss: lastRss }
}

/** Takes a snapshot: the counters as they are, and gauges counted now (one pass over the sessions). */
export function collectStats(source: StatsSource, health: { ready: boolean; draining: boolean }, now = Date.now()): BrokerStats {
  const c = source.counters
  let disconnected = 0
  let subscriptions = 0
  let shared = 0
  let inflight = 0
  let queued = 0
  let queuedBytes = 0
  for (const session of source.sessions.values()) {
    if (session.persistent && session.link === null) disconnected++
    subscriptions += session.subscriptions.size
    for (const filter of session.subscriptions.keys()) if (filter.startsWith('$share/')) shared++
    inflight += session.inflightCount
    queued += session.queuedCount
    queuedBytes += session.queuedBytes
  }
  const byTransport: Record<string, number> = {}
  for (const connection of source.connections) byTransport[connection.transport] = (byTransport[connection.transport] ?? 0) + 1
  const { heapUsed, rss } = memory()
  if (heapUsed > heapMaximum) heapMaximum = heapUsed
  const connects: Record<string, number> = {}
  for (const [code, count] of c.connects) connects[String(code)] = count
  return {
    time: now,
    version: VERSION,
    nodeId: source.nodeId,
    startedAt: source.startedAt,
    uptimeSeconds: Math.floor((now - source.startedAt) / 1000),
    connections: { open: source.connectionCount, byTransport },
    clients: {
      connected: source.connectedCount,
      maximum: c.maxConnected,
      disconnected,
      total: source.connectedCount + disconnected,
      expired: c.sessionsExpired,
    },
    subscriptions: { total: subscriptions, shared },
    retained: { count: source.retainedCount },
    inflight,
    queued: { count: queued, bytes: queuedBytes },
    packets: { received: byType(c.packetsReceived), sent: byType(c.packetsSent) },
    bytes: { received: sum(c.bytesReceived), sent: sum(c.bytesSent), receivedByType: byType(c.bytesReceived), sentByType: byType(c.bytesSent) },
    messages: {
      received: [c.messagesReceived[0] as number, c.messagesReceived[1] as number, c.messagesReceived[2] as number],
      sent: [c.messagesSent[0] as number, c.messagesSent[1] as number, c.messagesSent[2] as number],
      dropped: { ...c.dropped },
    },
    connects,
    disconnects: Object.fromEntries(DISCONNECT_REASONS.map((r) => [r, c.disconnects[r] ?? 0])) as Record<DisconnectReason, number>,
    denied: { ...c.denied },
    sockets: { accepted: c.socketsAccepted, refused: { ...c.socketsRefused } },
    memory: { heapUsed, heapMaximum, rss },
    bridges: source.bridges.map(({ name, connected }) => ({ name, connected })),
    ready: health.ready,
    draining: health.draining,
  }
}
