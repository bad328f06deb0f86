/**
 * The dashboard's JSON: what `GET api/v1/...` returns, built from the broker's public API.
 */
import type { AddressInfo } from 'node:net'
import type { Broker } from '../broker.js'
import type { BridgeSummary } from '../bridge/options.js'
import type { Ban } from '../options.js'
import type { BrokerStats } from '../metrics/stats.js'
import type { Client, ClientSummary } from '../hooks/types.js'
import type { Subscription } from '../protocol/packets.js'

/** What the dashboard reads from the broker: a `Broker` fits. */
export type DashboardSource = Pick<
  Broker,
  'stats' | 'health' | 'clients' | 'getClient' | 'getSession' | 'getSubscriptions' | 'sessions' | 'bans' | 'on' | 'listeners' | 'bridges' | 'getRetained' | 'publish' | 'checkCredentials'
>

/** `GET api/v1/stats` and each Server-Sent Event: `broker.stats()` plus the event-loop delay. */
export type DashboardStats = BrokerStats & {
  /** Event-loop delay, p99 over recent seconds, in ms (as `broker.health()` reports it). */
  readonly eventLoopDelayMs: number
  /** Grows whenever a client connects or disconnects, so the page knows to fetch the list again. */
  readonly clientChanges: number
}

/** One client in `GET api/v1/clients`: its fields, when it connected (if known) and its session's counts. */
export type DashboardClient = ClientSummary & {
  /** When it connected, ms since the epoch; null when it connected before the dashboard was created. */
  readonly connectedAt: number | null
  readonly subscriptions: number
  /** QoS 1/2 messages sent to it and not acknowledged yet. */
  readonly inflight: number
  /** Messages waiting in its session. */
  readonly queued: number
}

/** `GET api/v1/clients/:id`: the client and its subscriptions. */
export type DashboardClientDetail = Omit<DashboardClient, 'subscriptions'> & {
  readonly subscriptions: Subscription[]
}

/** One topic filter in `GET api/v1/subscriptions`: how many sessions subscribe to it, and (some of) which. */
export interface DashboardTopicFilter {
  readonly topicFilter: string
  readonly subscribers: number
  /** The first {@link SUBSCRIBERS_LISTED} client identifiers, by id. */
  readonly clientIds: string[]
}

/** `GET api/v1/subscriptions`: the topic filters subscribed to, most subscribed first. */
export interface DashboardSubscriptions {
  /** Topic filters matching the search, before the limit. */
  readonly total: number
  readonly filters: DashboardTopicFilter[]
}

/** One message in `GET api/v1/retained`. */
export interface DashboardRetainedMessage {
  readonly topic: string
  readonly qos: number
  /** Payload size in bytes. */
  readonly size: number
  /** The payload's first {@link PAYLOAD_PREVIEW} bytes: as text when they are UTF-8, else base64. */
  readonly payload: string
  readonly encoding: 'utf8' | 'base64'
  /** Whether `payload` is only the beginning. */
  readonly truncated: boolean
}

/** `GET api/v1/retained`: the retained messages matching a filter, by topic. */
export interface DashboardRetained {
  readonly filter: string
  /** Messages matching the filter, before the limit. */
  readonly total: number
  readonly messages: DashboardRetainedMessage[]
}

/** One listener in `GET api/v1/listeners`. */
export interface DashboardListener {
  readonly transport: string
  /** `host:port` (IPv6 in brackets) or a socket path. */
  readonly address: string
  /** Connections open on the listeners of this transport. */
  readonly connections: number
}

/** One bridge in `GET api/v1/bridges`: its summary and its outbox. */
export type DashboardBridge = BridgeSummary & {
  /** Messages sent on toward the remote and not acknowledged by it yet. */
  readonly inflight: number
  /** Messages waiting in the outbox behind them. */
  readonly queued: number
}

/** How many client identifiers a topic filter lists. */
export const SUBSCRIBERS_LISTED = 20
/** How many payload bytes a retained message shows. */
export const PAYLOAD_PREVIEW = 1024
/** The most entries a list request returns. */
export const MAX_LIMIT = 10_000

function byKey<T>(key: (item: T) => string): (a: T, b: T) => number {
  return (a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)
}

function formatAddress(address: AddressInfo | string): string {
  if (typeof address === 'string') return address
  return address.family === 'IPv6' ? `[${address.address}]:${address.port}` : `${address.address}:${address.port}`
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** How many bytes a UTF-8 sequence starting with `lead` has, or 0 when `lead` does not start one. */
function sequenceLength(lead: number): number {
  return lead >= 0xf0 && lead <= 0xf4 ? 4 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xc2 && lead <= 0xdf ? 2 : 0
}

/**
 * The start of a payload: as text when its first {@link PAYLOAD_PREVIEW} bytes are UTF-8 (a
 * character cut in two at the limit left out), else as base64.
 */
function preview(payload: Buffer): Pick<DashboardRetainedMessage, 'payload' | 'encoding' | 'truncated'> {
  const truncated = payload.length > PAYLOAD_PREVIEW
  let end = truncated ? PAYLOAD_PREVIEW : payload.length
  if (truncated) {
    // A sequence that starts within the last 3 bytes and would end past the limit: cut before it.
    for (let back = 1; back <= 3; back++) {
      const byte = payload[end - back] as number
      // Continuation bytes (10xxxxxx): look further back for the byte that starts them.
      if ((byte & 0xc0) === 0x80) continue
      if (sequenceLength(byte) > back) end -= back
      break
    }
  }
  try {
    return { payload: utf8.decode(payload.subarray(0, end)), encoding: 'utf8', truncated }
  } catch {
    return { payload: payload.subarray(0, truncated ? PAYLOAD_PREVIEW : payload.length).toString('base64'), encoding: 'base64', truncated }
  }
}

/** Reads the broker for the JSON API, and records when clients connect (Client has no such field). */
export class DashboardApi {
  private readonly connectedAt = new WeakMap<Client, number>()
  private changes = 0

  constructor(private readonly broker: DashboardSource) {
    broker.on('clientConnect', (client) => {
      this.connectedAt.set(client, Date.now())
      this.changes++
    })
    broker.on('clientDisconnect', () => {
      this.changes++
    })
  }

  stats(): DashboardStats {
    return { ...this.broker.stats(), eventLoopDelayMs: this.broker.health().eventLoopDelayMs, clientChanges: this.changes }
  }

  /** The connected clients whose id, user name or address contains `search` (case-insensitive), by id. */
  clients(search = ''): DashboardClient[] {
    const needle = search.toLowerCase()
    return this.broker.clients
      .filter((c) => needle === '' || [c.id, c.username ?? '', c.remoteAddress ?? ''].some((s) => s.toLowerCase().includes(needle)))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((c) => this.summary(c))
  }

  client(id: string): DashboardClientDetail | undefined {
    const client = this.broker.getClient(id)
    if (client === undefined) return undefined
    return { ...this.summary(client), subscriptions: this.broker.getSubscriptions(id) ?? [] }
  }

  /** Disconnects the client (MQTT 5: DISCONNECT 0x98 administrative action); false when it is not connected. */
  kick(id: string): boolean {
    const client = this.broker.getClient(id)
    if (client === undefined) return false
    client.close()
    return true
  }

  bans(): Ban[] {
    return this.broker.bans()
  }

  /**
   * The topic filters subscribed to whose text contains `search`, most subscribers first. Walks
   * every session: an administrator's request, not something to poll many times a second.
   */
  subscriptions(search: string, limit: number): DashboardSubscriptions {
    const filters = new Map<string, string[]>()
    for (const session of this.broker.sessions) {
      for (const sub of this.broker.getSubscriptions(session.clientId) ?? []) {
        if (search !== '' && !sub.topicFilter.includes(search)) continue
        let ids = filters.get(sub.topicFilter)
        if (ids === undefined) filters.set(sub.topicFilter, (ids = []))
        ids.push(session.clientId)
      }
    }
    const list = [...filters].map(([topicFilter, ids]) => ({ topicFilter, subscribers: ids.length, clientIds: ids.sort().slice(0, SUBSCRIBERS_LISTED) }))
    list.sort((a, b) => b.subscribers - a.subscribers || byKey<DashboardTopicFilter>((f) => f.topicFilter)(a, b))
    return { total: list.length, filters: list.slice(0, limit) }
  }

  /** The retained messages matching `filter`, by topic. Throws a TypeError for an invalid filter. */
  retained(filter: string, limit: number): DashboardRetained {
    const found = this.broker.getRetained(filter).sort(byKey((m) => m.topic))
    return {
      filter,
      total: found.length,
      messages: found.slice(0, limit).map((m) => ({ topic: m.topic, qos: m.qos, size: m.payload.length, ...preview(m.payload) })),
    }
  }

  /**
   * Deletes a topic's retained message as a client would, with an empty retained message
   * [MQTT-3.3.1-10] (so a cluster and the store follow); false when the topic has none. `topic`
   * must be a valid topic name (no wildcards).
   */
  async deleteRetained(topic: string): Promise<boolean> {
    if (this.broker.getRetained(topic).length === 0) return false
    await this.broker.publish({ topic, payload: Buffer.alloc(0), qos: 0, retain: true })
    return true
  }

  listeners(): DashboardListener[] {
    const byTransport = this.broker.stats().connections.byTransport
    return this.broker.listeners.map((l) => ({ transport: l.transport, address: formatAddress(l.address), connections: byTransport[l.transport] ?? 0 }))
  }

  /** The bridges, with how many messages wait in each one's outbox (its local session). */
  bridges(): DashboardBridge[] {
    return this.broker.bridges.map((b) => {
      const outbox = this.broker.getSession(b.localClientId)
      return { ...b, inflight: outbox?.inflight ?? 0, queued: outbox?.queued ?? 0 }
    })
  }

  private summary(client: Client): DashboardClient {
    const session = this.broker.getSession(client.id)
    return {
      ...client.toJSON(),
      connectedAt: this.connectedAt.get(client) ?? null,
      subscriptions: session?.subscriptions ?? 0,
      inflight: session?.inflight ?? 0,
      queued: session?.queued ?? 0,
    }
  }
}
