/**
 * `culex-mqtt/prometheus`: `registerMetrics` puts the broker's metrics into a prom-client
 * registry (the host's own, or the global one) with counter and gauge types, reading one
 * `broker.stats()` per scrape, values following real clients' activity, and leaves nothing behind
 * on `unregister`. The main entry never loads prom-client.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, test } from 'node:test'
import { promisify } from 'node:util'
import { register as globalRegister, Registry, type OpenMetricsContentType } from 'prom-client'
import type { BrokerHealth, BrokerStats } from '../../src/index.js'
import { registerMetrics } from '../../src/prometheus.js'
import { METRIC_FAMILIES } from '../../src/http/prometheus-text.js'
import { startBroker, until, withBroker } from '../helpers/index.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** The value of one sample line (`name{labels} value`) in a prom-client exposition, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe('registerMetrics', () => {
  test('every family is registered with its type: # TYPE culex_messages_received_total counter, gauges as gauge', async () => {
    await withBroker({}, async (b) => {
      const registry = new Registry()
      registerMetrics(b.broker, { registry })
      const text = await registry.metrics()
      assert.match(text, /^# TYPE culex_messages_received_total counter$/m)
      assert.match(text, /^# TYPE culex_clients_connected gauge$/m)
      for (const family of METRIC_FAMILIES) {
        assert.match(text, new RegExp(`^# TYPE ${family.name} ${family.type}$`, 'm'))
        assert.ok(registry.getSingleMetric(family.name) !== undefined, family.name)
      }
    })
  })

  test('values follow real clients: 3 QoS 1 publishes, then 2 more, seen on the next scrape; gauges drop back', async () => {
    await withBroker({}, async (b) => {
      const registry = new Registry()
      registerMetrics(b.broker, { registry })
      const pub = await b.connect({ clientId: 'prom-pub' })
      for (let i = 0; i < 3; i++) await pub.publishAsync('prom/t', `m${i}`, { qos: 1 })
      const first = await registry.metrics()
      assert.ok((sample(first, 'culex_messages_received_total{qos="1"}') ?? 0) >= 3, 'messages_received_total{qos="1"} ≥ 3')
      assert.equal(sample(first, 'culex_clients_connected'), 1)
      assert.equal(sample(first, 'culex_connections{transport="tcp"}'), 1)
      for (let i = 0; i < 2; i++) await pub.publishAsync('prom/t', `n${i}`, { qos: 1 })
      await pub.endAsync()
      await until(() => b.broker.stats().connections.open === 0, undefined, 'the connection is gone')
      const second = await registry.metrics()
      assert.equal(
        (sample(second, 'culex_messages_received_total{qos="1"}') ?? 0) - (sample(first, 'culex_messages_received_total{qos="1"}') ?? 0),
        2,
        'the counter went up by the 2 new messages',
      )
      assert.equal(sample(second, 'culex_clients_connected'), 0)
      assert.equal(sample(second, 'culex_connections{transport="tcp"}'), undefined, 'a transport with no connection left has no series')
    })
  })

  test('one broker.stats() and one broker.health() per scrape, whatever the number of families', async () => {
    await withBroker({}, async (b) => {
      let stats = 0
      let health = 0
      const counted = {
        stats: (): BrokerStats => {
          stats++
          return b.broker.stats()
        },
        health: (): BrokerHealth => {
          health++
          return b.broker.health()
        },
      }
      const registry = new Registry()
      registerMetrics(counted, { registry })
      await registry.metrics()
      assert.deepEqual([stats, health], [1, 1])
      await registry.getMetricsAsJSON()
      assert.deepEqual([stats, health], [2, 2])
      await Promise.all([registry.metrics(), registry.metrics()])
      assert.ok(stats <= 4, `two concurrent scrapes take at most two snapshots (took ${stats - 2})`)
      const before = stats
      await registry.getSingleMetricAsString('culex_sessions')
      assert.equal(stats, before + 1, 'a single metric read alone takes its own snapshot, not a stale one')
    })
  })

  test('default: prom-client’s global register; unregister removes exactly its metrics', async () => {
    await withBroker({}, async (b) => {
      const before = globalRegister.getMetricsAsArray().length
      const metrics = registerMetrics(b.broker)
      try {
        assert.equal(globalRegister.getMetricsAsArray().length, before + METRIC_FAMILIES.length)
        assert.match(await globalRegister.metrics(), /^culex_ready 1$/m)
      } finally {
        metrics.unregister()
      }
      assert.equal(globalRegister.getMetricsAsArray().length, before)
      assert.equal(globalRegister.getSingleMetric('culex_ready'), undefined)
      metrics.unregister()
    })
  })

  test('a name taken in the registry: throws and registers nothing; a prefix keeps two brokers apart', async () => {
    const a = await startBroker()
    const b = await startBroker()
    try {
      const registry = new Registry()
      registerMetrics(a.broker, { registry })
      const count = registry.getMetricsAsArray().length
      assert.throws(() => registerMetrics(b.broker, { registry }), /already been registered/)
      assert.equal(registry.getMetricsAsArray().length, count, 'nothing half-registered')
      const second = registerMetrics(b.broker, { registry, prefix: 'second_' })
      const text = await registry.metrics()
      assert.match(text, /^# TYPE second_culex_connects_total counter$/m)
      assert.match(text, /^culex_ready 1$/m)
      assert.match(text, /^second_culex_ready 1$/m)
      second.unregister()
      assert.equal(registry.getMetricsAsArray().length, count)
    } finally {
      await a.close()
      await b.close()
    }
  })

  test('an OpenMetrics registry: counters written as OpenMetrics wants (family without _total, samples with it)', async () => {
    await withBroker({}, async (b) => {
      const registry = new Registry<OpenMetricsContentType>()
      registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE)
      registerMetrics(b.broker, { registry })
      const pub = await b.connect({ clientId: 'om-pub' })
      await pub.publishAsync('om/t', 'x', { qos: 1 })
      const text = await registry.metrics()
      assert.match(text, /^# TYPE culex_messages_received counter$/m)
      assert.ok((sample(text, 'culex_messages_received_total{qos="1"}') ?? 0) >= 1)
      assert.ok(!text.includes('_total_total'))
      assert.ok(text.endsWith('# EOF\n'))
    })
  })
})

describe('packaging', () => {
  test('the main entry never loads prom-client; culex-mqtt/prometheus does', async () => {
    const probe = (entry: string): string =>
      [
        `await import(${JSON.stringify(new URL(entry, `file://${ROOT}`).href)})`,
        `const { createRequire } = await import('node:module')`,
        `const cache = createRequire(${JSON.stringify(`file://${ROOT}`)}).cache`,
        `console.log(Object.keys(cache).some((k) => k.includes('/node_modules/prom-client/')))`,
      ].join(';')
    const run = promisify(execFile)
    const loaded = async (entry: string): Promise<string> =>
      (await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe(entry)], { cwd: ROOT })).stdout.trim()
    assert.equal(await loaded('src/index.ts'), 'false')
    assert.equal(await loaded('src/http/handler.ts'), 'false')
    assert.equal(await loaded('src/http/server.ts'), 'false')
    assert.equal(await loaded('src/prometheus.ts'), 'true', 'the probe sees prom-client when it is loaded')
  })
})
