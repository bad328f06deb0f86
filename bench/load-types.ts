// What bench/run.ts asks of the load generator, and what a running load looks like.

import type { Dial } from './dial.js'

export type LoadSpec =
  // `window`: how many messages may be in flight (sent, not yet received). QoS 0: across all
  // publishers for fan-in/fan-out, per pair for pairs. QoS 1: unacknowledged PUBLISH per publisher.
  /** N QoS 0 publishers flood one topic, one subscriber counts. */
  | { kind: 'fanin'; publishers: number; window: number }
  /** One QoS 0 publisher floods one topic, N subscribers count. */
  | { kind: 'fanout'; subscribers: number; window: number }
  /** N publisher/subscriber pairs, each pair on its own topic. */
  | { kind: 'pairs'; pairs: number; qos: 0 | 1; window: number }
  /**
   * QoS 0 pairs whose subscribers subscribe `bench/<tag>/w/<i>/+` while `idleClients` other
   * clients hold `idleFilters` filters in all that share those prefixes but match nothing.
   */
  | { kind: 'wildcard'; pairs: number; window: number; idleClients: number; idleFilters: number }
  /**
   * QoS 0 pairs in MQTT 5: each PUBLISH carries 2 user properties and a message expiry
   * interval; each subscriber subscribes with a subscription identifier and allows the broker
   * `topicAliasMaximum` outgoing topic aliases.
   */
  | { kind: 'pairs5'; pairs: number; window: number; topicAliasMaximum: number }
  /** One publisher at a fixed rate with a send timestamp in the payload, one subscriber. */
  | { kind: 'latency'; rate: number }
  /** `workers` loops of connect → CONNACK → DISCONNECT → close, at most `maxConnections` in all. */
  | { kind: 'connect'; workers: number; maxConnections: number }
  /**
   * `clients` connections that connect (`concurrency` at a time) and then stay idle; with
   * `subscribe`, each first subscribes to a topic of its own. `perAddress`: connections per
   * loopback source address (fresh ones each time), for more than one address's ~28k ports.
   */
  | { kind: 'idle'; clients: number; concurrency: number; subscribe?: boolean; perAddress?: number }
  /**
   * `subscribers` persistent sessions (clean session 0) subscribe at QoS 1 and go offline; one
   * publisher sends each `messages` QoS 1 messages (`window` unacknowledged), the sessions
   * reconnect and must receive all of them. Two phases: start = queueing, finish = draining.
   */
  | { kind: 'persistent'; subscribers: number; messages: number; window: number }
  /**
   * `topics` retained QoS 0 messages are set (start), then one client subscribes to the
   * prefix's `#` and must receive them all (finish).
   */
  | { kind: 'retained'; topics: number }
  /**
   * `clients` clients hold `filtersPerClient` filters each (literal and wildcard); one publisher
   * then floods topics that each match exactly one of them, at most `window` messages ahead of
   * all deliveries.
   */
  | { kind: 'subscriptions'; clients: number; filtersPerClient: number; window: number }
export interface StartArgs {
  port: number
  spec: LoadSpec
  payloadBytes: number
  /** Unique per run so client ids and topics never collide with a previous repetition's. */
  tag: string
  /** How clients reach the broker; default plain TCP. */
  dial?: Dial
  /**
   * `connect`: the compiled bench/connect-churn.c to run the load with; without it the Node
   * workers run it (a fallback that saturates before a C broker does).
   */
  connectChurn?: string
}

export interface Running {
  /**
   * Cumulative counters; run.ts turns deltas over the measurement window into rates. A promise
   * where they live in another process (the native connect load answers over a pipe).
   */
  counters(): Record<string, number> | Promise<Record<string, number>>
  /** Cumulative CPU of the load's own processes besides the generator (the native connect load), µs. */
  cpuUs?(): number
  /** Results of setting up (e.g. how long a phase took), returned by the `start` request. */
  setup?: Record<string, number>
  beginWindow?(): void
  /** Scenario-specific results for the window (e.g. latency percentiles). */
  endWindow?(): Record<string, number>
  /** The second phase of a two-phase (`oneshot`) load; resolves with its results. */
  finish?(): Promise<Record<string, number>>
  /** Why the numbers so far are wrong (e.g. a delivery failed the scenario's check), or null. */
  problem?(): string | null
  stop(): Promise<void>
}

export interface Mark {
  /** performance.now() in the generator, ms. */
  t: number
  /** Cumulative user+system CPU of the generator process and of the load's own processes, µs. */
  cpuUs: number
  counters: Record<string, number>
  metrics: Record<string, number>
  /** Running.problem(), if any: run.ts reports an error instead of the numbers. */
  problem?: string
}
