// What bench/run.ts asks of the load generator, and what a running load looks like.

export type LoadSpec =
  // `window`: how many messages may be in flight (sent, not yet received). QoS 0: across all
  // publishers for fan-in/fan-out, per pair for pairs. QoS 1: unacknowledged PUBLISH per publisher.
  /** N QoS 0 publishers flood one topic, one subscriber counts. */
  | { kind: 'fanin'; publishers: number; window: number }
  /** One QoS 0 publisher floods one topic, N subscribers count. */
  | { kind: 'fanout'; subscribers: number; window: number }
  /** N publisher/subscriber pairs, each pair on its own topic. */
  | { kind: 'pairs'; pairs: number; qos: 0 | 1; window: number }
  /** One publisher at a fixed rate with a send timestamp in the payload, one subscriber. */
  | { kind: 'latency'; rate: number }
  /** `workers` loops of connect → CONNACK → DISCONNECT → close, at most `maxConnections` in all. */
  | { kind: 'connect'; workers: number; maxConnections: number }
  /** `clients` connections that connect and then stay idle. */
  | { kind: 'idle'; clients: number; concurrency: number }

export interface StartArgs {
  port: number
  spec: LoadSpec
  payloadBytes: number
  /** Unique per run so client ids and topics never collide with a previous repetition's. */
  tag: string
}

export interface Running {
  /** Cumulative counters; run.ts turns deltas over the measurement window into rates. */
  counters(): Record<string, number>
  beginWindow?(): void
  /** Scenario-specific results for the window (e.g. latency percentiles). */
  endWindow?(): Record<string, number>
  stop(): Promise<void>
}

export interface Mark {
  /** performance.now() in the generator, ms. */
  t: number
  /** Cumulative user+system CPU of the generator process, µs. */
  cpuUs: number
  counters: Record<string, number>
  metrics: Record<string, number>
}
