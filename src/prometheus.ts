/**
 * `culex-mqtt/prometheus`: the broker's metrics as prom-client collectors, registered in the
 * host's own registry, so the host serves one `/metrics` with its own metrics and Culex's.
 * Needs `prom-client` (an optional peer dependency of culex-mqtt).
 *
 * ```ts
 * import { register, collectDefaultMetrics } from 'prom-client'
 * import { registerMetrics } from 'culex-mqtt/prometheus'
 * collectDefaultMetrics()
 * const metrics = registerMetrics(broker)
 * app.get('/metrics', async (_req, res) => res.type(register.contentType).send(await register.metrics()))
 * // when the broker goes away:
 * metrics.unregister()
 * ```
 * @packageDocumentation
 */
import { Counter, Gauge, register as globalRegistry, type OpenMetricsContentType, type PrometheusContentType, type Registry } from 'prom-client'
import type { BrokerHealth } from './broker.js'
import { METRIC_FAMILIES, type MetricFamily } from './http/prometheus-text.js'
import type { BrokerStats } from './metrics/stats.js'

/** What the collectors read from the broker: a `Broker` fits. */
export interface MetricsSource {
  /** The snapshot a scrape reads (once per scrape). */
  stats(): BrokerStats
  /** For `culex_eventloop_delay_seconds` (once per scrape). */
  health(): BrokerHealth
}

/** A prom-client registry, Prometheus text or OpenMetrics. */
export type AnyRegistry = Registry<PrometheusContentType> | Registry<OpenMetricsContentType>

/** Options of {@link registerMetrics}. */
export interface RegisterMetricsOptions {
  /** The registry to register in (Prometheus text or OpenMetrics). Default: prom-client's global `register`. */
  registry?: AnyRegistry
  /**
   * Put before every metric name, as prom-client's `collectDefaultMetrics({ prefix })` does
   * (`'edge_'` gives `edge_culex_connections`). Default none. Two brokers in one registry need
   * different prefixes: a name can be registered once.
   */
  prefix?: string
}

/** What {@link registerMetrics} returns. */
export interface RegisteredMetrics {
  /** Removes every metric it registered from the registry. */
  unregister(): void
}

/** A stable key for a sample's label set. */
function labelKey(labels: Readonly<Record<string, string>> | undefined): string {
  if (labels === undefined) return ''
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

/** Removes `metric` from `registry`, unless the name now belongs to another metric. */
function removeIfOurs(registry: AnyRegistry, metric: Gauge | Counter): void {
  const name = (metric as unknown as { name: string }).name
  if (registry.getSingleMetric(name) === metric) registry.removeSingleMetric(name)
}

/**
 * Registers the broker's metrics (the families of `prometheusText`, with the same names, types,
 * labels and help) in a prom-client registry. Values are read when the registry is scraped,
 * never pushed: the first collector a scrape calls takes one `broker.stats()` snapshot and every
 * other collector of that scrape reads the same one.
 *
 * Counters are prom-client `Counter`s (`# TYPE culex_messages_received_total counter`; in an
 * OpenMetrics registry prom-client writes them `culex_messages_received` with `_total` samples).
 * As prom-client's own `process_cpu_seconds_total` does, each collect adds the increase since the
 * last scrape with `inc`, so `registry.resetMetrics()` restarts them at 0, as a counter reset.
 *
 * Throws (and registers nothing) if a name is already taken in the registry.
 */
export function registerMetrics(broker: MetricsSource, options: RegisterMetricsOptions = {}): RegisteredMetrics {
  const registry: AnyRegistry = options.registry ?? globalRegistry
  const prefix = options.prefix ?? ''

  // One snapshot per scrape: a registry calls every collect() synchronously, one after the other,
  // before it awaits anything, so a snapshot kept until the next microtask serves one scrape.
  let snapshot: { stats: BrokerStats; health: BrokerHealth } | undefined
  const current = (): { stats: BrokerStats; health: BrokerHealth } => {
    if (snapshot === undefined) {
      snapshot = { stats: broker.stats(), health: broker.health() }
      queueMicrotask(() => {
        snapshot = undefined
      })
    }
    return snapshot
  }

  const samplesOf = (family: MetricFamily): ReturnType<MetricFamily['samples']> => {
    const { stats, health } = current()
    return family.samples(stats, health)
  }

  const registeredMetrics: Array<Gauge | Counter> = []
  try {
    for (const family of METRIC_FAMILIES) {
      const name = prefix + family.name
      const common = { name, help: family.help, labelNames: [...family.labelNames], registers: [registry] }
      if (family.type === 'gauge') {
        registeredMetrics.push(new Gauge({
          ...common,
          collect(this: Gauge) {
            // Series that went away (a transport with no connection left) go away here too.
            this.reset()
            for (const sample of samplesOf(family) ?? []) {
              if (sample.labels === undefined) this.set(sample.value)
              else this.set(sample.labels, sample.value)
            }
          },
        }))
      } else {
        const seen = new Map<string, number>()
        registeredMetrics.push(new Counter({
          ...common,
          collect(this: Counter) {
            for (const sample of samplesOf(family) ?? []) {
              const key = labelKey(sample.labels)
              const last = seen.get(key)
              let delta = last === undefined ? sample.value : sample.value - last
              if (delta < 0) {
                // The source went down (it never should): restart the series, as a counter reset.
                if (sample.labels === undefined) this.reset()
                else this.remove(sample.labels)
                delta = sample.value
              }
              seen.set(key, sample.value)
              // inc(0) on a new series creates it at 0, so every series exists from the first scrape.
              if (sample.labels === undefined) this.inc(delta)
              else this.inc(sample.labels, delta)
            }
          },
        }))
      }
    }
  } catch (error) {
    for (const metric of registeredMetrics) removeIfOurs(registry, metric)
    throw error
  }

  let registered = true
  return {
    unregister: () => {
      if (!registered) return
      registered = false
      for (const metric of registeredMetrics) removeIfOurs(registry, metric)
    },
  }
}
