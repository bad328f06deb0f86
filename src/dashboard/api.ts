/**
 * The dashboard's JSON: what `GET api/v1/...` returns, built from the broker's public API.
 */
import type { Broker } from '../broker.js'
import type { Ban } from '../options.js'
import type { BrokerStats } from '../metrics/stats.js'
import type { Client, ClientSummary } from '../hooks/types.js'
import type { Subscription } from '../protocol/packets.js'

/** What the dashboard reads from the broker: a `Broker` fits. */
export type DashboardSource = Pick<Broker, 'stats' | 'health' | 'clients' | 'getClient' | 'getSession' | 'getSubscriptions' | 'bans' | 'on'>

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
