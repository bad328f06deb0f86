import type { Redis } from 'ioredis'
import type { PersistenceOp, RestoredSession, RestoredState } from '../persistence/adapter.js'
import { RedisPersistence, type RedisPersistenceOptions } from '../persistence/redis.js'
import { encodeBatch } from '../persistence/redis/codec.js'
import type { JournalOp } from './ops.js'

/** How a cluster node takes part in each commit (`ClusterNode`). */
export interface CommitRouting {
  /** `<owner token>\n<node id>`. */
  header(): string
  /**
   * A batch that gave this node new routes was applied, up to route version `version`: resolves
   * once every other live node has seen them (and committed what it routed before), so that
   * whatever the batch acknowledges (a SUBACK) holds cluster-wide.
   */
  routesSeen(version: string): Promise<void>
}
/**
 * The Redis store of a cluster node: the Redis adapter's commits, with the cluster's part of each
 * batch (forwards to other nodes routed at commit time, route changes, fencing by owner), and
 * without reading every session at open: a node loads the sessions it owns or takes over.
 */
export class ClusterStore extends RedisPersistence {
  routing: CommitRouting | undefined

  constructor(options: RedisPersistenceOptions) {
    super(options)
  }

  /** The connection the store opened (the node sends its own scripts on it too). */
  get redis(): Redis {
    const client = this.client
    if (client === undefined) throw new Error('the cluster store is not open')
    return client
  }

  /** The keys' prefix with its hash tag: `{culex}`. */
  get keyPrefix(): string {
    return this.keys.prefix
  }

  /** Where the retained change log stood before the retained messages were read: the node tails it from there. */
  retainedLogStart = '0-0'

  protected override async opened(client: Redis): Promise<RestoredState> {
    const last = (await client.xrevrange(`${this.keys.prefix}:retlog`, '+', '-', 'COUNT', 1)) as Array<[string, string[]]>
    this.retainedLogStart = last[0]?.[0] ?? '0-0'
    return this.readRetained(client)
  }

  /** The stored sessions of these clients. */
  sessionsOf(clientIds: readonly string[]): Promise<RestoredSession[]> {
    return this.loadSessions(this.redis, clientIds)
  }

  override async commit(ops: readonly PersistenceOp[]): Promise<void> {
    if (ops.length === 0) return
    const routing = this.routing
    if (routing === undefined) throw new Error('the cluster store has no node')
    const all = ops as readonly JournalOp[]
    let forwards: Map<string, Buffer[]> | undefined
    let added = false
    for (const op of all) {
      if (op.op === 'forward') {
        forwards ??= new Map()
        const list = forwards.get(op.node)
        if (list === undefined) forwards.set(op.node, [op.entry])
        else list.push(op.entry)
      } else if (op.op === 'route' && op.present) {
        added = true
      }
    }
    let perNode: Map<string, Buffer> | undefined
    if (forwards !== undefined) {
      perNode = new Map()
      for (const [node, entries] of forwards) perNode.set(node, entries.length === 1 ? (entries[0] as Buffer) : Buffer.concat(entries))
    }
    const reply = (await this.send(encodeBatch(all, perNode), routing.header())) as [number, string]
    // Not awaited here: the next batch commits meanwhile (the other nodes' confirmations may
    // wait for this node's commits); only the acknowledgements wait (`ackGate`).
    if (added) this.gate = routing.routesSeen(String(reply[1]))
  }

  private gate: Promise<void> | undefined

  /** The journal asks right after each commit: what the acknowledgements of that batch wait for. */
  ackGate(): Promise<void> | undefined {
    const gate = this.gate
    this.gate = undefined
    return gate
  }
}
