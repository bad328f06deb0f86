/**
 * `/metrics`: the Prometheus text format 0.0.4, checked line by line by a strict checker (HELP and
 * TYPE before every family's samples, valid names and labels, float values, no duplicate series,
 * counters in `_total`), against a real broker with real `mqtt` clients, fetched over real HTTP
 * from `startOperationsServer`; and the same series, with the same values, as prom-client prints
 * through `registerMetrics` from the same snapshot.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { Registry } from 'prom-client'
import type { BrokerHealth, BrokerStats } from '../../src/index.js'
import { prometheusText } from '../../src/http/prometheus-text.js'
import { startOperationsServer, type OperationsServer } from '../../src/http/server.js'
import { registerMetrics } from '../../src/prometheus.js'
import { freePort, leave, startBroker, until, type TestBroker } from '../helpers/index.js'

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/
/** What Go's strconv.ParseFloat (Prometheus's parser) takes, as Prometheus writes it. */
const FLOAT = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)$/
const TIMESTAMP = /^-?\d+$/
/** The only labels Culex may use: each has a small fixed set of values, never a client's id. */
const ALLOWED_LABELS = new Set(['transport', 'result', 'reason', 'type', 'qos', 'action', 'version', 'node', 'bridge'])

interface Family {
  help?: string
  type?: string
  sampled: boolean
}

interface Exposition {
  families: Map<string, Family>
  /** Value by series: `name{a="x",b="y"}`, labels sorted by name. */
  series: Map<string, number>
  /** Label values seen, for the no-client-id check. */
  labelValues: Set<string>
}

/** A series key with its labels sorted by name. */
function seriesKey(name: string, labels: Array<[string, string]>): string {
  const sorted = [...labels].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return `${name}{${sorted.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`
}

/** Parses `{a="x",b="y"}` from `line` at `start`; returns the labels and where they end. */
function parseLabels(line: string, start: number, where: string): { labels: Array<[string, string]>; end: number } {
  const labels: Array<[string, string]> = []
  let i = start + 1
  for (;;) {
    if (line[i] === '}') return { labels, end: i + 1 }
    const eq = line.indexOf('=', i)
    assert.ok(eq > i, `${where}: label name expected`)
    const name = line.slice(i, eq)
    assert.match(name, LABEL_NAME, `${where}: label name`)
    assert.ok(!name.startsWith('__'), `${where}: label names starting with __ are reserved`)
    assert.ok(!labels.some(([n]) => n === name), `${where}: label ${name} twice`)
    assert.equal(line[eq + 1], '"', `${where}: label value must be quoted`)
    let value = ''
    i = eq + 2
    for (;;) {
      const c = line[i]
      assert.ok(c !== undefined, `${where}: unterminated label value`)
      if (c === '"') break
      if (c === '\\') {
        const next = line[i + 1]
        assert.ok(next === '\\' || next === '"' || next === 'n', `${where}: bad escape \\${next ?? ''}`)
        value += next === 'n' ? '\n' : next
        i += 2
        continue
      }
      value += c
      i++
    }
    labels.push([name, value])
    i++
    if (line[i] === ',') i++
    else assert.equal(line[i], '}', `${where}: ',' or '}' expected after a label`)
  }
}

/**
 * A strict checker of the text exposition format 0.0.4. Blank lines and other comments are
 * allowed (prom-client writes blank lines between families).
 */
function checkExposition(text: string): Exposition {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a line feed')
  const families = new Map<string, Family>()
  const series = new Map<string, number>()
  const labelValues = new Set<string>()
  const finished = new Set<string>()
  let current: string | undefined
  const enter = (name: string, where: string): Family => {
    if (current !== name) {
      assert.ok(!finished.has(name), `${where}: the lines of ${name} must be together`)
      if (current !== undefined) finished.add(current)
      current = name
    }
    let family = families.get(name)
    if (family === undefined) families.set(name, (family = { sampled: false }))
    return family
  }
  const lines = text.slice(0, -1).split('\n')
  lines.forEach((line, index) => {
    const where = `line ${index + 1} ${JSON.stringify(line)}`
    if (line === '') return
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
      if (m === null) return
      const [, kind, name, rest] = m as unknown as [string, 'HELP' | 'TYPE', string, string]
      assert.match(name, METRIC_NAME, `${where}: metric name`)
      const family = enter(name, where)
      assert.ok(!family.sampled, `${where}: ${kind} after the family's samples`)
      if (kind === 'HELP') {
        assert.equal(family.help, undefined, `${where}: a second HELP`)
        assert.ok(!/\\(?![\\n])/.test(rest), `${where}: HELP may only escape \\\\ and \\n`)
        family.help = rest
      } else {
        assert.equal(family.type, undefined, `${where}: a second TYPE`)
        assert.ok(['counter', 'gauge', 'untyped'].includes(rest), `${where}: type ${rest}`)
        family.type = rest
        if (rest === 'counter') assert.ok(name.endsWith('_total'), `${where}: a counter's name ends in _total`)
      }
      return
    }
    const nameEnd = line.search(/[{ ]/)
    assert.ok(nameEnd > 0, `${where}: a sample`)
    const name = line.slice(0, nameEnd)
    assert.match(name, METRIC_NAME, `${where}: metric name`)
    const family = enter(name, where)
    assert.ok(family.help !== undefined, `${where}: HELP must come before the samples`)
    assert.ok(family.type !== undefined, `${where}: TYPE must come before the samples`)
    family.sampled = true
    let labels: Array<[string, string]> = []
    let rest = line.slice(nameEnd)
    if (rest.startsWith('{')) {
      const parsed = parseLabels(line, nameEnd, where)
      labels = parsed.labels
      rest = line.slice(parsed.end)
    }
    const m = /^ (\S+)(?: (\S+))?$/.exec(rest)
    assert.ok(m !== null, `${where}: ' value [timestamp]' expected`)
    assert.match(m[1] as string, FLOAT, `${where}: value`)
    if (m[2] !== undefined) assert.match(m[2], TIMESTAMP, `${where}: timestamp`)
    const key = seriesKey(name, labels)
    assert.ok(!series.has(key), `${where}: duplicate series ${key}`)
    const raw = m[1] as string
    series.set(key, raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw))
    for (const [, value] of labels) labelValues.add(value)
  })
  for (const [name, family] of families) {
    assert.ok(family.help !== undefined && family.type !== undefined, `${name}: HELP and TYPE`)
  }
  return { families, series, labelValues }
}

/** The value of a series (labels in any order), or undefined. */
function value(exposition: Exposition, name: string, labels: Record<string, string> = {}): number | undefined {
  return exposition.series.get(seriesKey(name, Object.entries(labels)))
}

/** Every family Culex must expose, with its type. */
const EXPECTED_FAMILIES: Record<string, 'counter' | 'gauge'> = {
  culex_info: 'gauge',
  culex_uptime_seconds: 'gauge',
  culex_ready: 'gauge',
  culex_connections: 'gauge',
  culex_clients_connected: 'gauge',
  culex_clients_maximum: 'gauge',
  culex_sessions: 'gauge',
  culex_sessions_offline: 'gauge',
  culex_subscriptions: 'gauge',
  culex_shared_subscriptions: 'gauge',
  culex_retained_messages: 'gauge',
  culex_inflight_messages: 'gauge',
  culex_queued_messages: 'gauge',
  culex_queued_bytes: 'gauge',
  culex_heap_used_bytes: 'gauge',
  culex_resident_memory_bytes: 'gauge',
  culex_eventloop_delay_seconds: 'gauge',
  culex_connects_total: 'counter',
  culex_disconnects_total: 'counter',
  culex_packets_received_total: 'counter',
  culex_packets_sent_total: 'counter',
  culex_bytes_received_total: 'counter',
  culex_bytes_sent_total: 'counter',
  culex_messages_received_total: 'counter',
  culex_messages_sent_total: 'counter',
  culex_messages_dropped_total: 'counter',
  culex_auth_denied_total: 'counter',
  culex_sockets_accepted_total: 'counter',
  culex_sockets_refused_total: 'counter',
  culex_sessions_expired_total: 'counter',
}

const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

describe('/metrics over HTTP, after real clients connected, subscribed and published', () => {
  let b: TestBroker
  let ops: OperationsServer
  let url: string
  const clientIds = ['metrics-sub', 'metrics-pub', 'metrics-refused', 'metrics-leaver']

  before(async () => {
    b = await startBroker({
      // One client is refused, so a refusal code and a connect denial are counted.
      authenticate: (request) => request.clientId !== 'metrics-refused',
    })
    ops = await startOperationsServer(b.broker, { port: 0, host: '127.0.0.1' })
    url = `http://127.0.0.1:${ops.address().port}`
    const sub = await b.connect({ clientId: 'metrics-sub' })
    await sub.subscribeAsync('metrics/#', { qos: 1 })
    const received: string[] = []
    sub.on('message', (_topic, payload) => received.push(payload.toString()))
    const pub = await b.connect({ clientId: 'metrics-pub' })
    for (let i = 0; i < 3; i++) await pub.publishAsync('metrics/t', `m${i}`, { qos: 1 })
    await until(() => received.length === 3, undefined, 'the subscriber got the 3 messages')
    await assert.rejects(b.connect({ clientId: 'metrics-refused' }))
    const leaver = await b.connect({ clientId: 'metrics-leaver' })
    await leave(b, leaver)
    // The refused client's socket closes on its own time.
    await until(() => b.broker.stats().connections.open === 2, undefined, 'only sub and pub still connected')
  })

  after(async () => {
    await ops?.close()
    await b?.close()
  })

  test('GET /metrics: 200, text/plain version 0.0.4, a valid exposition with every family and its type', async () => {
    const res = await fetch(`${url}/metrics`)
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8')
    const exposition = checkExposition(await res.text())
    for (const [name, type] of Object.entries(EXPECTED_FAMILIES)) {
      assert.equal(exposition.families.get(name)?.type, type, `${name} is a ${type}`)
    }
    for (const [name, family] of exposition.families) {
      assert.ok(name.startsWith('culex_'), `${name} has the culex_ prefix`)
      assert.equal(family.type === 'counter', name.endsWith('_total'), `${name}: counters and only counters end in _total`)
    }
    assert.equal(value(exposition, 'culex_info', { version: VERSION }), 1)
    assert.equal(value(exposition, 'culex_ready'), 1)
  })

  test('no label carries a client identifier: only the fixed label names, and no client id among the values', async () => {
    const exposition = checkExposition(await (await fetch(`${url}/metrics`)).text())
    for (const key of exposition.series.keys()) {
      for (const [, name] of key.matchAll(/[{,]([a-zA-Z_][a-zA-Z0-9_]*)=/g)) assert.ok(ALLOWED_LABELS.has(name as string), `${key}: label ${name}`)
    }
    for (const id of clientIds) assert.ok(!exposition.labelValues.has(id), `${id} appears as a label value`)
  })

  test('gauges count what is there now: 2 clients, 2 TCP connections, 1 subscription', async () => {
    const exposition = checkExposition(await (await fetch(`${url}/metrics`)).text())
    assert.equal(value(exposition, 'culex_clients_connected'), 2)
    assert.equal(value(exposition, 'culex_connections', { transport: 'tcp' }), 2)
    assert.equal(value(exposition, 'culex_subscriptions'), 1)
    assert.equal(value(exposition, 'culex_shared_subscriptions'), 0)
    assert.equal(value(exposition, 'culex_sessions'), 2)
    assert.ok((value(exposition, 'culex_clients_maximum') ?? 0) >= 3, 'clients_maximum: sub, pub and the leaver were connected at once')
    assert.ok((value(exposition, 'culex_heap_used_bytes') ?? 0) > 0)
    assert.ok((value(exposition, 'culex_resident_memory_bytes') ?? 0) > 0)
  })

  test('counters reflect what the clients did (these follow the hot-path counter wiring)', async () => {
    const e = checkExposition(await (await fetch(`${url}/metrics`)).text())
    // Every shortfall is reported, not only the first.
    const short: string[] = []
    const atLeast = (name: string, labels: Record<string, string>, min: number): void => {
      const v = value(e, name, labels)
      if (v === undefined || v < min) short.push(`${seriesKey(name, Object.entries(labels))} = ${String(v)}, expected ≥ ${min}`)
    }
    atLeast('culex_messages_received_total', { qos: '1' }, 3)
    atLeast('culex_messages_sent_total', { qos: '1' }, 3)
    atLeast('culex_packets_received_total', { type: 'publish' }, 3)
    atLeast('culex_packets_received_total', { type: 'connect' }, 4)
    atLeast('culex_packets_received_total', { type: 'subscribe' }, 1)
    atLeast('culex_packets_sent_total', { type: 'puback' }, 3)
    atLeast('culex_packets_sent_total', { type: 'publish' }, 3)
    atLeast('culex_packets_sent_total', { type: 'connack' }, 4)
    atLeast('culex_connects_total', { result: '0' }, 3)
    // authenticate returning false: 3.1.1 return code 4, bad user name or password.
    atLeast('culex_connects_total', { result: '4' }, 1)
    atLeast('culex_auth_denied_total', { action: 'connect' }, 1)
    atLeast('culex_disconnects_total', { reason: 'disconnect' }, 1)
    atLeast('culex_sockets_accepted_total', {}, 4)
    atLeast('culex_bytes_received_total', {}, 1)
    atLeast('culex_bytes_sent_total', {}, 1)
    assert.deepEqual(short, [])
  })

  test('the same series and values as prom-client prints through registerMetrics, from the same snapshot', async () => {
    const stats = b.broker.stats()
    const health = b.broker.health()
    const registry = new Registry()
    registerMetrics({ stats: () => stats, health: () => health }, { registry })
    const ours = checkExposition(prometheusText(stats, health))
    const theirs = checkExposition(await registry.metrics())
    assert.deepEqual([...theirs.series.entries()].sort(), [...ours.series.entries()].sort())
    assert.deepEqual(
      [...theirs.families.entries()].map(([n, f]) => [n, f.type, f.help]).sort(),
      [...ours.families.entries()].map(([n, f]) => [n, f.type, f.help]).sort(),
    )
  })
})

describe('prometheusText', () => {
  test('escapes label values (backslash, double quote, line feed) so the exposition still parses', async () => {
    const b = await startBroker()
    try {
      const stats = b.broker.stats()
      const odd = 'we"ird\\trans\nport'
      const crafted: BrokerStats = { ...stats, connections: { open: 1, byTransport: { [odd]: 1 } }, nodeId: 'node "a"' }
      const text = prometheusText(crafted)
      assert.ok(text.includes('culex_connections{transport="we\\"ird\\\\trans\\nport"} 1'), text)
      const exposition = checkExposition(text)
      assert.equal(value(exposition, 'culex_connections', { transport: odd }), 1)
      assert.equal(value(exposition, 'culex_info', { version: VERSION, node: 'node "a"' }), 1)
    } finally {
      await b.close()
    }
  })

  test('without a health snapshot the event-loop gauge is left out; with one it is in seconds', async () => {
    const b = await startBroker()
    try {
      const stats = b.broker.stats()
      assert.equal(checkExposition(prometheusText(stats)).families.has('culex_eventloop_delay_seconds'), false)
      const health: BrokerHealth = { alive: true, ready: true, draining: false, eventLoopDelayMs: 250 }
      assert.equal(value(checkExposition(prometheusText(stats, health)), 'culex_eventloop_delay_seconds'), 0.25)
    } finally {
      await b.close()
    }
  })

  test('CONNACK codes are decimal strings in numeric order, and result="0" is there before any client', async () => {
    const b = await startBroker()
    try {
      const stats = b.broker.stats()
      const none = checkExposition(prometheusText({ ...stats, connects: {} }))
      assert.equal(value(none, 'culex_connects_total', { result: '0' }), 0)
      const text = prometheusText({ ...stats, connects: { '135': 2, '5': 1, '0': 7 } })
      const lines = text.split('\n').filter((l) => l.startsWith('culex_connects_total'))
      assert.deepEqual(lines, ['culex_connects_total{result="0"} 7', 'culex_connects_total{result="5"} 1', 'culex_connects_total{result="135"} 2'])
    } finally {
      await b.close()
    }
  })
})

describe('bridges in the metrics', () => {
  test('culex_bridge_up{bridge} is 0 while the remote is down, 1 once connected; stats().bridges says the same', async () => {
    const remote = await startBroker()
    const b = await startBroker()
    try {
      const down = await b.broker.bridge({ name: 'down', url: `mqtt://127.0.0.1:${await freePort()}`, topics: [{ filter: 'x/#' }], reconnectPeriod: 50, maxReconnectPeriod: 200 })
      const up = await b.broker.bridge({ name: 'up', url: `mqtt://127.0.0.1:${remote.port}`, topics: [{ filter: 'x/#' }] })
      await until(() => up.connected, 5000, 'the bridge to connect')
      assert.deepEqual(b.broker.stats().bridges, [{ name: 'down', connected: false }, { name: 'up', connected: true }])
      const exposition = checkExposition(prometheusText(b.broker.stats()))
      assert.equal(value(exposition, 'culex_bridge_up', { bridge: 'down' }), 0)
      assert.equal(value(exposition, 'culex_bridge_up', { bridge: 'up' }), 1)
      await down.close()
      assert.ok(!prometheusText(b.broker.stats()).includes('bridge="down"'), 'a closed bridge leaves the metrics')
    } finally {
      await b.close()
      await remote.close()
    }
  })
})

describe('the operations server', () => {
  test('with metrics: false, /metrics is 404 and the health endpoints still answer', async () => {
    const b = await startBroker()
    const ops = await startOperationsServer(b.broker, { port: 0, metrics: false })
    try {
      const base = `http://127.0.0.1:${ops.address().port}`
      assert.equal((await fetch(`${base}/metrics`)).status, 404)
      assert.equal((await fetch(`${base}/healthz`)).status, 200)
    } finally {
      await ops.close()
      await b.close()
    }
  })
})
