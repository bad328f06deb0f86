/**
 * Cluster mode: several broker processes (nodes) share one Redis and behave as one broker.
 * Redis holds the sessions, retained messages and routes, and carries messages between nodes;
 * this option sets the store and the bus together, so they cannot disagree. See docs/cluster.md.
 */
export interface ClusterOptions {
  /**
   * Where Redis is: a URL (`redis://[:password@]host:port[/db]`), ioredis options (`RedisOptions`,
   * Sentinel included), or an ioredis client to take the settings from (duplicated, never closed).
   * It must fsync every write before answering (`appendonly yes`, `appendfsync always`). Typed
   * loosely so that the package's types do not need ioredis's: the options and the client are
   * passed to ioredis as they are.
   */
  redis: string | object
  /**
   * This node's name, unique among the live nodes (letters, digits, `.`, `_`, `-`). A node
   * restarted with the same id takes back the sessions it owned. Default: the host name and
   * process id.
   */
  nodeId?: string
  /**
   * Milliseconds a node's lease in Redis lasts (renewed every third of it). A node that cannot
   * renew it drops its clients; once it has expired, the other nodes take over the dead node's
   * sessions and publish its clients' wills. Default 5,000.
   */
  leaseMs?: number
  /** What the cluster's keys start with, inside a hash tag. Default `'culex'`. */
  prefix?: string
  /** Refuse to start when Redis does not fsync every write (see `RedisPersistenceOptions.strict`). Default false: warn. */
  strict?: boolean
}
