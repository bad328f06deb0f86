import type { Redis } from 'ioredis'
import type { PersistenceOp, RestoredSession, RestoredState } from '../persistence/adapter.js'
import { RedisPersistence, type RedisPersistenceOptions } from '../persistence/redis.js'
import { encodeBatch } from '../persistence/redis/codec.js'
import type { JournalOp } from './ops.js'

/** How a cluster node takes part in each commit (`ClusterNode`). */
export interface CommitRouting {
  /** The forwards of a batch (per node, one inbox entry), routed with the routes of `version`. */
  forwards(ops: readonly JournalOp[]): Map<string, Buffer> | undefined
  /** `<owner token>\n<route version the forwards used, or '' when the batch forwards nothing>\n<node id>`. */
  header(forwarding: boolean): string
  /** Brings the routes up to date after a batch was refused as routed with stale ones. */
  catchUp(): Promise<void>
  /** A batch was applied: the route version before it and after it. */
  applied(before: string, after: string): void
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

  protected override opened(client: Redis): Promise<RestoredState> {
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
    const forwarding = all.some((op) => op.op === 'publish')
    for (;;) {
      // Routed now, with the routes this node knows: the script refuses the batch if they changed since.
      const reply = await this.send(encodeBatch(all, forwarding ? routing.forwards(all) : undefined), routing.header(forwarding))
      if (Array.isArray(reply) && String(reply[0]) === 'STALE') {
        await routing.catchUp()
        continue
      }
      const [, before, after] = reply as [number, string, string]
      routing.applied(String(before), String(after))
      return
    }
  }
}
