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
}

export interface ScenarioDef {
  id: string
  title: string
  /** 'window': steady traffic measured over a fixed window; 'memory': before/after snapshot. */
  kind: 'window' | 'memory'
  spec: LoadSpec
  metrics: MetricDef[]
}

const rate = (key: string, label: string, unit: string): MetricDef => ({ key, label, unit, better: 'higher', digits: 0 })

export function scenarios(): ScenarioDef[] {
  return [
    {
      id: 'fanin', title: 'fan-in: 8 publishers → 1 subscriber, QoS 0', kind: 'window',
      spec: { kind: 'fanin', publishers: 8, window: 1024 },
      metrics: [rate('fanin', 'fan-in 8→1, QoS 0', 'msg/s received')],
    },
    {
      id: 'fanout', title: 'fan-out: 1 publisher → 50 subscribers, QoS 0', kind: 'window',
      spec: { kind: 'fanout', subscribers: 50, window: 2048 },
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
      id: 'latency', title: 'latency at 2,000 msg/s, 1 publisher → 1 subscriber, QoS 0', kind: 'window',
      spec: { kind: 'latency', rate: 2000 },
      metrics: [
        { key: 'p50', label: 'latency p50 @ 2k msg/s', unit: 'µs', better: 'lower', digits: 0 },
        { key: 'p99', label: 'latency p99 @ 2k msg/s', unit: 'µs', better: 'lower', digits: 0 },
      ],
    },
    {
      id: 'connect', title: 'connections per second: CONNECT → CONNACK → DISCONNECT, 8 parallel workers', kind: 'window',
      spec: { kind: 'connect', workers: 8, maxConnections: 50_000 },
      metrics: [rate('connect', 'connections (8 workers)', 'conn/s')],
    },
    {
      id: 'memory', title: 'memory per idle connection: RSS and heap delta after 2,000 connected clients', kind: 'memory',
      spec: { kind: 'idle', clients: 2000, concurrency: 50 },
      metrics: [
        { key: 'rssPerConn', label: 'RSS per idle connection', unit: 'KiB', better: 'lower', digits: 1 },
        { key: 'heapPerConn', label: 'heap per idle connection', unit: 'KiB', better: 'lower', digits: 1 },
      ],
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
