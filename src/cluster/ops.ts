import type { PersistenceOp } from '../persistence/adapter.js'

/**
 * What a cluster node records in its journal besides persistence operations, so that they
 * commit in the same atomic batch as the state changes they go with (a QoS 2 message's
 * "received" mark and its forwarding to other nodes, a delivery and the inbox entry it came from).
 * Only the Redis adapter in cluster mode ever sees them. Internal.
 */
export type ClusterOp =
  /** A message published here, to another node's inbox (encoded by `encodeForwardEntry`). */
  | { op: 'forward'; node: string; entry: Buffer }
  /** This node starts or stops having subscribers for a topic filter. */
  | { op: 'route'; filter: string; present: boolean }
  /** An entry of this node's inbox was handled: its deliveries are in the same batch. */
  | { op: 'inboxDone'; id: string }
  /** An entry of the inbox of a node this one adopted was handled (`key`: after `{p}:`). */
  | { op: 'drainedEntry'; key: string; id: string }
  /** The inbox of a node this one adopted was handled whole (`key`: after `{p}:`). */
  | { op: 'drained'; key: string }

/** What the journal carries. */
export type JournalOp = PersistenceOp | ClusterOp
