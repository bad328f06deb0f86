import { log } from '../logging.js'
import type { BrokerStats } from './stats.js'

/** Where $SYS lives, as in Mosquitto. */
const ROOT = '$SYS/broker'

/** The EWMA periods of Mosquitto's load topics, in seconds, by topic suffix. */
const LOAD_PERIODS: ReadonlyArray<[string, number]> = [
  ['1min', 60],
  ['5min', 300],
  ['15min', 900],
]

/** A value Mosquitto publishes only when it changed (`max`: only when it grew). */
interface Metric {
  readonly topics: readonly string[]
  readonly value: (s: BrokerStats) => number
  readonly max?: boolean
}

function sum(values: Readonly<Record<string, number>> | readonly number[]): number {
  let total = 0
  for (const v of Object.values(values)) total += v
  return total
}

const packetsReceived = (s: BrokerStats): number => sum(s.packets.received)
const packetsSent = (s: BrokerStats): number => sum(s.packets.sent)

/** Mosquitto's metrics (src/sys_tree.c), with the aliases it publishes next to some of them. */
const METRICS: readonly Metric[] = [
  { topics: ['clients/total'], value: (s) => s.clients.total },
  { topics: ['clients/maximum'], value: (s) => s.clients.maximum, max: true },
  { topics: ['clients/disconnected', 'clients/inactive'], value: (s) => s.clients.disconnected },
  { topics: ['clients/connected', 'clients/active'], value: (s) => s.clients.connected },
  { topics: ['clients/expired'], value: (s) => s.clients.expired },
  // Mosquitto's message store holds every message it keeps: retained, queued and in flight.
  { topics: ['messages/stored', 'store/messages/count'], value: (s) => s.retained.count + s.queued.count + s.inflight },
  { topics: ['store/messages/bytes'], value: (s) => s.queued.bytes },
  // Mosquitto counts shared subscriptions apart from the others.
  { topics: ['subscriptions/count'], value: (s) => s.subscriptions.total - s.subscriptions.shared },
  { topics: ['shared_subscriptions/count'], value: (s) => s.subscriptions.shared },
  { topics: ['retained messages/count'], value: (s) => s.retained.count },
  { topics: ['heap/current'], value: (s) => s.memory.heapUsed },
  { topics: ['heap/maximum'], value: (s) => s.memory.heapMaximum, max: true },
  // Mosquitto's "messages" are packets of every type.
  { topics: ['messages/received'], value: packetsReceived },
  { topics: ['messages/sent'], value: packetsSent },
  { topics: ['bytes/received'], value: (s) => s.bytes.received },
  { topics: ['bytes/sent'], value: (s) => s.bytes.sent },
  { topics: ['publish/bytes/received'], value: (s) => s.bytes.receivedByType.publish },
  { topics: ['publish/bytes/sent'], value: (s) => s.bytes.sentByType.publish },
  { topics: ['connections/socket/count'], value: (s) => s.sockets.accepted },
  { topics: ['publish/messages/dropped'], value: (s) => sum(s.messages.dropped) },
  { topics: ['publish/messages/received'], value: (s) => s.packets.received.publish },
  { topics: ['publish/messages/sent'], value: (s) => s.packets.sent.publish },
]

/** The totals Mosquitto's load topics average, per minute. */
const LOADS: ReadonlyArray<[string, (s: BrokerStats) => number]> = [
  ['messages/received', packetsReceived],
  ['messages/sent', packetsSent],
  ['publish/dropped', (s) => sum(s.messages.dropped)],
  ['publish/received', (s) => s.packets.received.publish],
  ['publish/sent', (s) => s.packets.sent.publish],
  ['bytes/received', (s) => s.bytes.received],
  ['bytes/sent', (s) => s.bytes.sent],
  ['sockets', (s) => s.sockets.accepted],
  ['connections', (s) => s.packets.received.connect],
]

/**
 * Mosquitto's `$SYS/broker/...` tree, with its topic names and payload formats, so tools built on
 * it (mosquitto-exporter, Grafana dashboards, MQTT Explorer) work unchanged. Every topic is
 * retained; a value is published only when it changed (maxima only when they grew), as Mosquitto
 * does. The load topics are Mosquitto's moving averages of per-minute rates:
 * rate = Δ·60/Δt, load = rate + e^(−Δt/P)·(load − rate), P = 60, 300, 900 s, printed `%.2f`, and
 * published when they moved by 0.01 or more.
 */
export class SysTree {
  private readonly current = new Map<string, number>()
  private readonly loads = new Map<string, number>()
  private previous: BrokerStats | undefined
  private timer: NodeJS.Timeout | undefined

  constructor(
    /** Seconds between refreshes (Mosquitto's `sys_interval`). */
    private readonly intervalSeconds: number,
    private readonly snapshot: () => BrokerStats,
    /** Publishes one retained $SYS message. */
    private readonly publish: (topic: string, payload: string) => void,
  ) {}

  /** Publishes the whole tree (loads at 0.00, as Mosquitto starts them), then refreshes every interval. */
  start(): void {
    const stats = this.snapshot()
    this.publish(`${ROOT}/version`, `culex version ${stats.version}`)
    this.update(stats, true)
    this.timer = setInterval(() => this.refresh(), this.intervalSeconds * 1000)
    this.timer.unref()
  }

  /** A timer's refresh: nothing it meets may escape into the process (an uncaught exception ends it). */
  private refresh(): void {
    try {
      this.update(this.snapshot())
    } catch (error) {
      log.error('$SYS refresh failed: %O', error)
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  /** One refresh: uptime, the loads, then every metric that changed. `force` publishes all. */
  update(stats: BrokerStats, force = false): void {
    this.publish(`${ROOT}/uptime`, `${stats.uptimeSeconds} seconds`)
    const previous = this.previous
    const elapsed = previous === undefined ? 0 : (stats.time - previous.time) / 1000
    for (const [name, read] of LOADS) {
      for (const [suffix, period] of LOAD_PERIODS) {
        const topic = `${ROOT}/load/${name}/${suffix}`
        const old = this.loads.get(topic) ?? 0
        let value = old
        if (previous !== undefined && elapsed > 0) {
          const rate = ((read(stats) - read(previous)) * 60) / elapsed
          value = rate + Math.exp(-elapsed / period) * (old - rate)
        }
        if (force || Math.abs(value - old) >= 0.01) this.publish(topic, value.toFixed(2))
        this.loads.set(topic, value)
      }
    }
    for (const metric of METRICS) {
      const value = metric.value(stats)
      const old = this.current.get(metric.topics[0] as string)
      const changed = old === undefined || (metric.max === true ? value > old : value !== old)
      if (!force && !changed) continue
      this.current.set(metric.topics[0] as string, value)
      for (const topic of metric.topics) this.publish(`${ROOT}/${topic}`, String(Math.round(value)))
    }
    this.previous = stats
  }
}
