/**
 * The broker's metrics in the Prometheus text exposition format 0.0.4, built from one
 * `broker.stats()` snapshot with no dependency. `culex-mqtt/prometheus` registers the same
 * families (same names, types, labels and help) in a prom-client registry; both read
 * {@link METRIC_FAMILIES}, so the two can never drift apart.
 *
 * Names follow the OpenMetrics conventions: a `culex_` prefix, base units (seconds, bytes),
 * counters end in `_total`. No label ever carries a client identifier, user name or address:
 * every label has a small set of values fixed by the code or by the host's configuration (bridge names).
 */
import type { BrokerHealth } from '../broker.js'
import type { BrokerStats } from '../metrics/stats.js'

/** The Content-Type of {@link prometheusText}'s output. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** One sample of a metric family: its labels (none for an unlabeled metric) and value. */
export interface MetricSample {
  /** Label names and values; absent for an unlabeled metric. */
  readonly labels?: Readonly<Record<string, string>>
  readonly value: number
}

/** A metric family: what both the text format and the prom-client adapter expose. */
export interface MetricFamily {
  /** The full metric name (counters include `_total`). */
  readonly name: string
  /** `counter` (only goes up while the broker runs) or `gauge`. */
  readonly type: 'counter' | 'gauge'
  /** The `# HELP` text. */
  readonly help: string
  /** Every label the samples may carry. */
  readonly labelNames: readonly string[]
  /**
   * The samples in a snapshot. `undefined` when the family cannot be computed from what was
   * given (a health-only figure without a `BrokerHealth`): the family is then left out entirely.
   */
  readonly samples: (stats: BrokerStats, health: BrokerHealth | undefined) => readonly MetricSample[] | undefined
}

/** One sample per key of a record, with the key as the value of `label`. */
function byLabel(label: string, record: Readonly<Record<string, number>>): MetricSample[] {
  return Object.entries(record).map(([key, value]) => ({ labels: { [label]: key }, value }))
}

/** Packet types a client may send (MQTT 5 §2.1.2), and those a server may send. */
const CLIENT_PACKETS = new Set(['connect', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'unsubscribe', 'pingreq', 'disconnect', 'auth'])
const SERVER_PACKETS = new Set(['connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'suback', 'unsuback', 'pingresp', 'disconnect', 'auth'])

/**
 * Samples by packet type, for the types that may go in that direction (a broker never sends a
 * CONNECT nor receives a SUBACK), plus any other type that nevertheless has a count.
 */
function byPacketType(record: Readonly<Record<string, number>>, direction: ReadonlySet<string>): MetricSample[] {
  return byLabel('type', record).filter((sample) => sample.value !== 0 || direction.has(sample.labels?.type ?? ''))
}

/** One unlabeled sample. */
function one(value: number): MetricSample[] {
  return [{ value }]
}

/** Samples by QoS (`qos="0"`, `"1"`, `"2"`). */
function byQos(values: readonly [number, number, number]): MetricSample[] {
  return values.map((value, qos) => ({ labels: { qos: String(qos) }, value }))
}

/** CONNACK codes in numeric order, with `result="0"` (accepted) always present so the series exists from the start. */
function connackResults(connects: Readonly<Record<string, number>>): MetricSample[] {
  const codes = new Map<string, number>([['0', 0]])
  for (const [code, count] of Object.entries(connects)) codes.set(code, count)
  return [...codes.entries()].sort(([a], [b]) => Number(a) - Number(b)).map(([result, value]) => ({ labels: { result }, value }))
}

/** `version`, and `node` when clustered (an empty label is the same as none to Prometheus, so it is left out). */
function infoLabels(stats: BrokerStats): Record<string, string> {
  const labels: Record<string, string> = { version: stats.version }
  if (stats.nodeId !== undefined) labels.node = stats.nodeId
  return labels
}

function gauge(name: string, help: string, samples: MetricFamily['samples'], labelNames: readonly string[] = []): MetricFamily {
  return { name, type: 'gauge', help, labelNames, samples }
}

function counter(name: string, help: string, samples: MetricFamily['samples'], labelNames: readonly string[] = []): MetricFamily {
  return { name, type: 'counter', help, labelNames, samples }
}

/**
 * Every metric family Culex exposes, in output order. Shared by {@link prometheusText} and
 * `registerMetrics` (`culex-mqtt/prometheus`).
 */
export const METRIC_FAMILIES: readonly MetricFamily[] = [
  gauge('culex_info', 'Culex version (and cluster node id when clustered); always 1.', (s) => [{ labels: infoLabels(s), value: 1 }], ['version', 'node']),
  gauge('culex_start_time_seconds', 'When the broker was created, in seconds since the Unix epoch.', (s) => one(s.startedAt / 1000)),
  gauge('culex_uptime_seconds', 'Seconds since the broker was created.', (s) => one(s.uptimeSeconds)),
  gauge('culex_ready', 'Whether the broker is ready: listening, stored sessions restored, not draining nor closed (1 or 0).', (s) => one(s.ready ? 1 : 0)),
  gauge('culex_draining', 'Whether the broker is draining (1 or 0).', (s) => one(s.draining ? 1 : 0)),
  gauge('culex_eventloop_delay_seconds', 'Event-loop delay over the last few seconds (p99), in seconds.', (_s, h) => (h === undefined ? undefined : one(h.eventLoopDelayMs / 1000))),
  gauge('culex_connections', 'Network connections open now (CONNECT handshakes included), by transport.', (s) => byLabel('transport', s.connections.byTransport), ['transport']),
  gauge('culex_clients_connected', 'Clients connected now (past CONNECT).', (s) => one(s.clients.connected)),
  gauge('culex_clients_maximum', 'The most clients connected at once since the broker started.', (s) => one(s.clients.maximum)),
  gauge('culex_sessions', 'Sessions: connected clients plus persistent sessions without a connection.', (s) => one(s.clients.total)),
  gauge('culex_sessions_offline', 'Persistent sessions without a connection.', (s) => one(s.clients.disconnected)),
  gauge('culex_subscriptions', 'Client subscriptions (one per client and topic filter), shared ones included.', (s) => one(s.subscriptions.total)),
  gauge('culex_shared_subscriptions', 'Client subscriptions to $share/... filters.', (s) => one(s.subscriptions.shared)),
  gauge('culex_retained_messages', 'Retained messages stored.', (s) => one(s.retained.count)),
  gauge('culex_inflight_messages', 'QoS 1/2 messages sent to clients and not acknowledged yet.', (s) => one(s.inflight)),
  gauge('culex_queued_messages', 'Messages waiting in session queues.', (s) => one(s.queued.count)),
  gauge('culex_queued_bytes', 'Bytes (payload and topic) of the messages waiting in session queues.', (s) => one(s.queued.bytes)),
  gauge('culex_heap_used_bytes', 'V8 heap in use by this process, in bytes.', (s) => one(s.memory.heapUsed)),
  gauge('culex_resident_memory_bytes', 'Resident set size of this process, in bytes.', (s) => one(s.memory.rss)),
  gauge('culex_bridge_up', 'Whether each outgoing bridge has its remote broker connected (1 or 0), by bridge name.', (s) => s.bridges.map((b) => ({ labels: { bridge: b.name }, value: b.connected ? 1 : 0 })), ['bridge']),
  counter('culex_connects_total', 'CONNACKs sent, by code (result="0": accepted; 3.1.1 return codes 1-5, MQTT 5 reason codes 128 and up).', (s) => connackResults(s.connects), ['result']),
  counter('culex_disconnects_total', 'Connections of connected clients that ended, by reason.', (s) => byLabel('reason', s.disconnects), ['reason']),
  counter('culex_packets_received_total', 'MQTT packets received from clients, by packet type.', (s) => byPacketType(s.packets.received, CLIENT_PACKETS), ['type']),
  counter('culex_packets_sent_total', 'MQTT packets sent to clients, by packet type.', (s) => byPacketType(s.packets.sent, SERVER_PACKETS), ['type']),
  counter('culex_bytes_received_total', 'Bytes received from clients.', (s) => one(s.bytes.received)),
  counter('culex_bytes_sent_total', 'Bytes sent to clients.', (s) => one(s.bytes.sent)),
  counter('culex_messages_received_total', 'Application messages (PUBLISH) received from clients, by QoS.', (s) => byQos(s.messages.received), ['qos']),
  counter('culex_messages_sent_total', 'Application messages (PUBLISH) sent to clients, by QoS.', (s) => byQos(s.messages.sent), ['qos']),
  counter('culex_messages_dropped_total', 'Messages not delivered to a subscriber or not accepted from a publisher, by reason.', (s) => byLabel('reason', s.messages.dropped), ['reason']),
  counter('culex_auth_denied_total', 'Authentication (action="connect") and authorization refusals, by action.', (s) => byLabel('action', s.denied), ['action']),
  counter('culex_sockets_accepted_total', 'Sockets handed to the broker.', (s) => one(s.sockets.accepted)),
  counter('culex_sockets_refused_total', 'Sockets refused before MQTT began (bans, per-IP limits, the acceptConnection hook), by reason.', (s) => byLabel('reason', s.sockets.refused), ['reason']),
  counter('culex_sessions_expired_total', 'Persistent sessions that expired.', (s) => one(s.clients.expired)),
]

/** `# HELP` text: backslash and line feed escaped. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

/** A label value: backslash, double quote and line feed escaped. */
function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}

/** A sample value as Prometheus parses it (Go's ParseFloat, plus `NaN`, `+Inf`, `-Inf`). */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  return String(value)
}

function formatLabels(labels: Readonly<Record<string, string>> | undefined): string {
  if (labels === undefined) return ''
  const parts = Object.entries(labels).map(([name, value]) => `${name}="${escapeLabelValue(value)}"`)
  return parts.length === 0 ? '' : `{${parts.join(',')}}`
}

/**
 * Renders a stats snapshot in the Prometheus text exposition format 0.0.4 (serve it with
 * Content-Type {@link PROMETHEUS_CONTENT_TYPE}). Every family gets `# HELP` and `# TYPE` lines,
 * then its samples; counters end in `_total`. Pass `health` (from `broker.health()`) to include
 * `culex_eventloop_delay_seconds`.
 *
 * ```ts
 * res.setHeader('Content-Type', PROMETHEUS_CONTENT_TYPE)
 * res.end(prometheusText(broker.stats(), broker.health()))
 * ```
 */
export function prometheusText(stats: BrokerStats, health?: BrokerHealth): string {
  const lines: string[] = []
  for (const family of METRIC_FAMILIES) {
    const samples = family.samples(stats, health)
    if (samples === undefined) continue
    lines.push(`# HELP ${family.name} ${escapeHelp(family.help)}`, `# TYPE ${family.name} ${family.type}`)
    for (const sample of samples) lines.push(`${family.name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`)
  }
  return lines.join('\n') + '\n'
}
