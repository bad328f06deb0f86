/**
 * What connections ask of a cluster node (`ClusterNode` implements it): kept apart so that the
 * connection layer's types do not pull in the node's, and with them ioredis's.
 */
export interface ClusterClaims {
  /** False while the node has no lease: clients are refused. */
  readonly accepting: boolean
  /**
   * Makes this node the owner of a client identifier, with its stored session in memory. False
   * when a newer claim on another node won.
   */
  claim(clientId: string): Promise<boolean>
  /** Whether another node has a subscription matching `topic`, as far as this node knows. */
  reaches(topic: string): boolean
}
