// Scenario definitions and the printed tables. Kept apart from run.ts so the list of what is
// measured, and how each number is derived, reads in one place.

import type { LoadSpec } from './load-types.js'

export const BROKERS = ['culex', 'aedes', 'mosquitto', 'flashmq'] as const
export type BrokerName = (typeof BROKERS)[number]

export interface MetricDef {
  key: string
  label: string
  unit: string
  better: 'higher' | 'lower'
  digits: number
  /**
   * Where the value comes from (bench/run.ts): 'rate:<counter>', the counter's growth over the
   * window per second; else a result of that name: the generator's window metrics (p50Us ...),
   * a load's setup or finish results (queueRate, deliverMs ...), or the broker's memory
   * (rssMiB, heapMiB; rssPerConn, heapPerConn for idle clients; heapAfterFloodPct,
   * rssAfterFloodMiB with `afterFlood`; rss0, heap0, rss1 ... per phase of a 'floods' scenario).
   * Default 'rate:received'.
   */
  source?: string
  /** Multiplies the value (e.g. 1/1000 for ms → s). */
  scale?: number
}

export type Listener = 'tcp' | 'ws' | 'tls'

export interface ScenarioDef {
  id: string
  title: string
  /**
   * 'window': steady traffic measured over a fixed window; 'memory': idle clients, a
   * before/after snapshot; 'oneshot': a two-phase load (the generator's start, then finish),
   * each phase timed by the load itself; 'floods': `phases` one after the other on one broker
   * process, its memory at rest read before the first and after each.
   */
  kind: 'window' | 'memory' | 'oneshot' | 'floods'
  /** The load ('floods': its first phase, for what needs one spec). */
  spec: LoadSpec
  /** 'floods' only: the loads, in order, each run for the window's duration and torn down. */
  phases?: FloodPhase[]
  metrics: MetricDef[]
  /** How the brokers listen and the clients connect; default plain TCP. */
  listener?: Listener
  /** A fresh broker process for each repetition: memory is measured, or state would carry over. Always for 'memory'. */
  fresh?: boolean
  /** The broker's RSS and heap, after a forced GC, before the generator's start and after it (rssMiB, heapMiB). */
  memory?: boolean
  /**
   * The broker's memory at rest (no client connected, after a forced GC): once when its process
   * is fresh, and again after each repetition's load is torn down; heapAfterFloodPct (after ÷
   * idle) and rssAfterFloodMiB (after − idle). Does the memory a flood took come back?
   */
  afterFlood?: boolean
  /** Run only when named in --scenarios (or with --scenarios all): too slow for a default run. */
  optIn?: boolean
  /** Brokers that cannot run it, and why (their column says skipped). */
  unsupported?: Partial<Record<BrokerName, string>>
  /** Connections the generator (and so the broker) holds at once, when in the thousands: checked against the open-files limit. */
  connections?: number
  /** Longest the generator's start (and finish) may take; default 60 s. */
  setupTimeoutMs?: number
}

/** One phase of a 'floods' scenario: `name` goes into the labels of its rss<i>/heap<i> rows. */
export interface FloodPhase { name: string; spec: LoadSpec }

const rate = (key: string, label: string, unit: string, source?: string): MetricDef =>
  ({ key, label, unit, better: 'higher', digits: 0, ...(source === undefined ? {} : { source }) })
const micros = (key: string, label: string, source: string): MetricDef => ({ key, label, unit: 'µs', better: 'lower', digits: 0, source })
const mib = (key: string, label: string, source: string): MetricDef => ({ key, label, unit: 'MiB', better: 'lower', digits: 1, source })
const kib = (key: string, label: string, source: string): MetricDef => ({ key, label, unit: 'KiB', better: 'lower', digits: 1, source })
const pct = (key: string, label: string, source: string): MetricDef => ({ key, label, unit: '% of idle', better: 'lower', digits: 0, source })

/** The rows of an `afterFlood` scenario: heap at rest after its flood, % of idle (goal ≤ 120), and RSS growth. */
const afterFloodMetrics = (id: string, what: string): MetricDef[] => [
  pct(`${id}HeapAfter`, `heap at rest after ${what}`, 'heapAfterFloodPct'),
  mib(`${id}RssAfter`, `RSS at rest after ${what}, − idle`, 'rssAfterFloodMiB'),
]

// The loads of the `floods` scenario: the bench's own fan-in, deep pairs and fan-out, then the
// deep pairs again, so growth from the first deep phase to the second is a ratchet, not a
// different load's needs.
const FANIN: LoadSpec = { kind: 'fanin', publishers: 8, window: 1024 }
const DEEP: LoadSpec = { kind: 'pairs', pairs: 50, qos: 0, window: 4096 }
const FANOUT: LoadSpec = { kind: 'fanout', subscribers: 50, window: 2048 }
const FLOOD_PHASES: FloodPhase[] = [
  { name: 'fan-in', spec: FANIN }, { name: 'deep', spec: DEEP }, { name: 'fan-out', spec: FANOUT }, { name: 'deep again', spec: DEEP },
]

/** Per phase of `floods` (0 = idle, fresh process): RSS and heap at rest, MiB. */
function floodsMetrics(): MetricDef[] {
  const names = ['idle', ...FLOOD_PHASES.map((p) => `after ${p.name}`)]
  return [
    ...names.map((n, i) => mib(`floodsRss${i}`, `floods: RSS ${n}`, `rss${i}`)),
    ...names.map((n, i) => mib(`floodsHeap${i}`, `floods: heap ${n}`, `heap${i}`)),
  ]
}

/** 1000 → '1k', 100000 → '100k', 1000000 → '1M'. */
function short(n: number): string {
  if (n >= 1_000_000 && n % 100_000 === 0) return `${n / 1_000_000}M`
  if (n >= 1000 && n % 100 === 0) return `${n / 1000}k`
  return String(n)
}

const MQTT5_ONLY = { aedes: 'Aedes does not support MQTT 5' }

/** A fixed-rate latency scenario: p50, p99 and max; keys suffixed by the rate (p50_5k), except the original 2k one's (p50, p99, max). */
function latencyAt(rate_: number, id: string): ScenarioDef {
  const k = short(rate_)
  const sfx = id === 'latency' ? '' : `_${k}`
  return {
    id, title: `latency at ${rate_.toLocaleString('en-US')} msg/s, 1 publisher → 1 subscriber, QoS 0`, kind: 'window',
    spec: { kind: 'latency', rate: rate_ },
    metrics: [
      micros(`p50${sfx}`, `latency p50 @ ${k} msg/s`, 'p50Us'),
      micros(`p99${sfx}`, `latency p99 @ ${k} msg/s`, 'p99Us'),
      micros(`max${sfx}`, `latency max @ ${k} msg/s`, 'maxUs'),
    ],
  }
}

/**
 * Every scenario. `scale` (0 < scale ≤ 1, --scale) shrinks the counts of the heavy ones (10k+
 * connections, 100k retained messages, 1M subscriptions) for a quick check of the code; their
 * titles show the counts actually used. Default sizes with scale 1.
 */
export function scenarios(scale = 1): ScenarioDef[] {
  const n = (x: number, min = 1): number => Math.max(min, Math.round(x * scale))
  const idle10k = n(10_000)
  const idle100k = n(100_000)
  const fan10k = n(10_000)
  const retainedTopics = n(100_000)
  const subClients = n(1000)
  return [
    {
      id: 'fanin', title: 'fan-in: 8 publishers → 1 subscriber, QoS 0', kind: 'window',
      spec: FANIN,
      metrics: [rate('fanin', 'fan-in 8→1, QoS 0', 'msg/s received')],
    },
    {
      id: 'fanout', title: 'fan-out: 1 publisher → 50 subscribers, QoS 0', kind: 'window',
      spec: FANOUT,
      metrics: [rate('fanout', 'fan-out 1→50, QoS 0', 'deliveries/s')],
    },
    {
      id: 'pairs', title: '50 publisher/subscriber pairs, own topic each, QoS 0', kind: 'window',
      spec: { kind: 'pairs', pairs: 50, qos: 0, window: 128 },
      metrics: [rate('pairs', '50 pairs, QoS 0', 'deliveries/s')],
    },
    {
      id: 'qos1', title: '50 pairs, QoS 1, 16 unacked PUBLISH per publisher', kind: 'window',
      spec: { kind: 'pairs', pairs: 50, qos: 1, window: 16 },
      metrics: [rate('qos1', '50 pairs, QoS 1 (window 16)', 'deliveries/s')],
    },
    {
      id: 'wildcard', title: '50 pairs, QoS 0, each subscriber on bench/<tag>/w/<i>/+, 1,000 non-matching filters held by 4 idle clients', kind: 'window',
      spec: { kind: 'wildcard', pairs: 50, window: 128, idleClients: 4, idleFilters: 1000 },
      metrics: [rate('wildcard', '50 pairs via +, 1k idle filters', 'deliveries/s')],
    },
    {
      id: 'deep', title: '50 pairs, QoS 0, 4,096 messages in flight per pair (deep outgoing queues)', kind: 'window',
      spec: DEEP,
      metrics: [rate('deep', '50 pairs, QoS 0, window 4096', 'deliveries/s'), ...afterFloodMetrics('deep', 'deep')],
      afterFlood: true,
    },
    latencyAt(2000, 'latency'),
    latencyAt(1000, 'latency1k'),
    latencyAt(5000, 'latency5k'),
    latencyAt(20_000, 'latency20k'),
    {
      id: 'mqtt5', title: '50 pairs in MQTT 5, QoS 0: 2 user properties + message expiry per PUBLISH, subscription identifiers, topic alias maximum 10', kind: 'window',
      spec: { kind: 'pairs5', pairs: 50, window: 128, topicAliasMaximum: 10 },
      metrics: [rate('mqtt5', '50 pairs, MQTT 5 + properties', 'deliveries/s')],
      unsupported: MQTT5_ONLY,
    },
    {
      id: 'ws', title: '50 pairs over WebSocket (subprotocol mqtt), QoS 0', kind: 'window', listener: 'ws',
      spec: { kind: 'pairs', pairs: 50, qos: 0, window: 128 },
      metrics: [rate('ws', '50 pairs over WebSocket', 'deliveries/s')],
    },
    {
      id: 'tls', title: '50 pairs over TLS (self-signed ECDSA P-256), QoS 0', kind: 'window', listener: 'tls',
      spec: { kind: 'pairs', pairs: 50, qos: 0, window: 128 },
      metrics: [rate('tls', '50 pairs over TLS', 'deliveries/s')],
    },
    {
      id: 'fanout10k', title: `fan-out: 1 publisher → ${fan10k.toLocaleString('en-US')} subscribers, QoS 0`, kind: 'window',
      // A shallow window: 64 messages ahead of the slowest of 10,000 subscribers is already
      // 640,000 deliveries (~50 MB) queued in the broker.
      spec: { kind: 'fanout', subscribers: fan10k, window: 64 },
      metrics: [rate('fanout10k', `fan-out 1→${short(fan10k)}, QoS 0`, 'deliveries/s'), ...afterFloodMetrics('fanout10k', `fan-out 1→${short(fan10k)}`)],
      connections: fan10k + 1,
      afterFlood: true,
      setupTimeoutMs: 180_000,
    },
    {
      id: 'connect', title: 'connections per second: CONNECT → CONNACK → DISCONNECT, 8 parallel workers', kind: 'window',
      // The cap bounds the load; 50,000 was reached inside the window once Mosquitto and FlashMQ
      // were driven by bench/connect-churn.c (~15k conn/s over 1-2 s of warm-up and 3 s).
      spec: { kind: 'connect', workers: 8, maxConnections: 200_000 },
      metrics: [rate('connect', 'connections (8 workers)', 'conn/s', 'rate:connections')],
    },
    {
      id: 'persistent', title: '100 persistent sessions (clean session 0) offline, 500 QoS 1 messages queued for each, then they reconnect', kind: 'oneshot',
      spec: { kind: 'persistent', subscribers: 100, messages: 500, window: 64 },
      metrics: [
        rate('persistQueue', 'QoS 1 into 100 offline queues', 'msg/s acked', 'queueRate'),
        rate('persistDrain', 'queued QoS 1 delivered on reconnect', 'msg/s', 'drainRate'),
      ],
      fresh: true,
    },
    {
      id: 'retained', title: `${retainedTopics.toLocaleString('en-US')} retained topics set, then one subscription to <prefix>/# receives them all`, kind: 'oneshot',
      spec: { kind: 'retained', topics: retainedTopics },
      metrics: [
        { key: 'retainedDeliver', label: `${short(retainedTopics)} retained delivered on subscribe`, unit: 'ms', better: 'lower', digits: 0, source: 'deliverMs' },
        mib('retainedRss', `RSS holding ${short(retainedTopics)} retained`, 'rssMiB'),
        mib('retainedHeap', `heap holding ${short(retainedTopics)} retained`, 'heapMiB'),
      ],
      fresh: true, memory: true, setupTimeoutMs: 180_000,
    },
    {
      id: 'memory', title: 'memory per idle connection: RSS and heap delta after 2,000 connected clients', kind: 'memory',
      spec: { kind: 'idle', clients: 2000, concurrency: 50 },
      metrics: [
        kib('rssPerConn', 'RSS per idle connection', 'rssPerConn'),
        kib('heapPerConn', 'heap per idle connection', 'heapPerConn'),
      ],
    },
    {
      id: 'memory10k', title: `memory per idle connection: ${idle10k.toLocaleString('en-US')} clients, one subscription each`, kind: 'memory',
      spec: { kind: 'idle', clients: idle10k, concurrency: 50, subscribe: true },
      metrics: [
        kib('rssPerConn10k', `RSS per idle subscriber (${short(idle10k)})`, 'rssPerConn'),
        kib('heapPerConn10k', `heap per idle subscriber (${short(idle10k)})`, 'heapPerConn'),
      ],
      connections: idle10k,
      setupTimeoutMs: 180_000,
    },
    {
      id: 'idle100k', title: `memory per idle connection: ${idle100k.toLocaleString('en-US')} clients from several loopback addresses (opt-in)`, kind: 'memory',
      spec: { kind: 'idle', clients: idle100k, concurrency: 100, perAddress: 10_000 },
      metrics: [
        kib('rssPerConn100k', `RSS per idle connection (${short(idle100k)})`, 'rssPerConn'),
        kib('heapPerConn100k', `heap per idle connection (${short(idle100k)})`, 'heapPerConn'),
      ],
      connections: idle100k, optIn: true, setupTimeoutMs: 300_000,
    },
    {
      id: 'subs1m', title: `${(subClients * 1000).toLocaleString('en-US')} subscriptions (${subClients.toLocaleString('en-US')} clients × 1,000 filters, 1/4 literal, 3/4 wildcard), then publishes matching one each (opt-in)`, kind: 'window',
      spec: { kind: 'subscriptions', clients: subClients, filtersPerClient: 1000, window: 1024 },
      metrics: [
        rate('subs1m', `match among ${short(subClients * 1000)} subscriptions`, 'deliveries/s'),
        { key: 'subs1mSubscribe', label: `${short(subClients * 1000)} subscriptions granted in`, unit: 's', better: 'lower', digits: 1, source: 'subscribeMs', scale: 1 / 1000 },
        mib('subs1mRss', `RSS holding ${short(subClients * 1000)} subscriptions`, 'rssMiB'),
        mib('subs1mHeap', `heap holding ${short(subClients * 1000)} subscriptions`, 'heapMiB'),
      ],
      connections: subClients + 1, fresh: true, memory: true, optIn: true, setupTimeoutMs: 300_000,
    },
    {
      id: 'floods', title: `memory at rest after floods, one broker process: ${FLOOD_PHASES.map((p) => p.name).join(' → ')} (opt-in)`, kind: 'floods',
      spec: FANIN, phases: FLOOD_PHASES,
      metrics: floodsMetrics(),
      fresh: true, optIn: true,
    },
  ]
}

export interface RepResult {
  values: Record<string, number>
  brokerCpuPct: number | null
  genCpuPct: number | null
  /** CPU used by everything else on the machine during the window (should be near 0). */
  otherCpuPct: number | null
  info: Record<string, number>
}

export interface Cell {
  reps: RepResult[]
  median: Record<string, number>
  brokerCpuPct: number | null
  genCpuPct: number | null
  otherCpuPct: number | null
  error?: string
  skipped?: string
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const mid = v.length >> 1
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2
}

export function summarize(reps: RepResult[], metrics: MetricDef[]): Omit<Cell, 'reps'> {
  const med: Record<string, number> = {}
  for (const m of metrics) med[m.key] = median(reps.map((r) => r.values[m.key] ?? NaN))
  const cpu = (f: (r: RepResult) => number | null): number | null => {
    const v = median(reps.map((r) => f(r) ?? NaN))
    return Number.isFinite(v) ? v : null
  }
  return {
    median: med,
    brokerCpuPct: cpu((r) => r.brokerCpuPct),
    genCpuPct: cpu((r) => r.genCpuPct),
    otherCpuPct: cpu((r) => r.otherCpuPct),
  }
}

export function formatNumber(x: number | undefined, digits: number): string {
  if (x === undefined || !Number.isFinite(x)) return 'n/a'
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–'
  return `${(a / b).toFixed(2)}×`
}

export type Results = Record<string, Partial<Record<BrokerName, Cell>>>

/**
 * The median, and with several repetitions their half-range relative to the median: a ratio
 * between two brokers means little when it is within their spreads.
 */
function cellText(cell: Cell | undefined, m: MetricDef): string {
  if (!cell) return '–'
  if (cell.skipped) return 'skipped'
  if (cell.error && cell.reps.length === 0) return 'error'
  const med = cell.median[m.key]
  const text = formatNumber(med, m.digits)
  const vals = cell.reps.map((r) => r.values[m.key] ?? NaN).filter((v) => Number.isFinite(v))
  if (vals.length < 2 || med === undefined || !Number.isFinite(med) || med === 0) return text
  const spread = (Math.max(...vals) - Math.min(...vals)) / 2 / Math.abs(med)
  return `${text} ±${Math.round(spread * 100)}%`
}

/** A GitHub-flavoured Markdown table, readable as plain text too. */
export function table(header: string[], rows: string[][], rightAlignFrom = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    '| ' + cells.map((c, i) => (i >= rightAlignFrom ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join(' | ') + ' |'
  const sep = '|' + widths.map((w, i) => (i >= rightAlignFrom ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|'
  return [line(header), sep, ...rows.map(line)].join('\n')
}

/** The brokers Culex is compared with, in column order, and their names in the ratio headers. */
const RATIO_COLUMNS: Array<[BrokerName, string]> = [['aedes', 'Culex/Aedes'], ['mosquitto', 'Culex/Mosquitto'], ['flashmq', 'Culex/FlashMQ']]

export function resultsTable(defs: ScenarioDef[], results: Results, brokers: BrokerName[]): string {
  const others = brokers.includes('culex') ? RATIO_COLUMNS.filter(([b]) => brokers.includes(b)) : []
  const header = ['scenario', 'unit', 'better', ...brokers, ...others.map(([, label]) => label)]
  const rows: string[][] = []
  for (const def of defs) {
    const r = results[def.id] ?? {}
    for (const m of def.metrics) {
      const culex = r.culex?.median[m.key]
      rows.push([
        m.label, m.unit, m.better, ...brokers.map((b) => cellText(r[b], m)),
        ...others.map(([b]) => ratio(culex, r[b]?.median[m.key])),
      ])
    }
  }
  return table(header, rows, 3)
}

/**
 * Broker and generator CPU (% of one core) over the window; `!` marks a generator near
 * saturation. The last column is the most any broker's runs saw used by other processes.
 */
export function cpuTable(defs: ScenarioDef[], results: Results, brokers: BrokerName[]): string {
  const header = ['scenario', ...brokers.map((b) => `${b} broker / gen`), 'other']
  const rows: string[][] = []
  for (const def of defs) {
    if (def.kind !== 'window') continue
    const r = results[def.id] ?? {}
    rows.push([def.metrics[0]?.label ?? def.id, ...brokers.map((b) => {
      const c = r[b]
      if (!c || c.skipped) return '–'
      if (c.brokerCpuPct === null && c.genCpuPct === null) return c.error ? 'error' : 'n/a'
      const g = c.genCpuPct
      return `${formatNumber(c.brokerCpuPct ?? NaN, 0)}% / ${formatNumber(g ?? NaN, 0)}%${g !== null && g >= 90 ? ' !' : ''}`
    }), (() => {
      const others = brokers.map((b) => r[b]?.otherCpuPct ?? NaN).filter(Number.isFinite)
      return others.length ? `${formatNumber(Math.max(...others), 0)}%` : '–'
    })()])
  }
  return table(header, rows, 1)
}

/** Changes which system goes first in each repetition (interleaved rounds). */
export function rotate<T>(xs: T[], by: number): T[] {
  if (xs.length === 0) return xs
  const k = by % xs.length
  return [...xs.slice(k), ...xs.slice(0, k)]
}
