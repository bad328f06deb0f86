/**
 * The `$SYS/broker/...` tree: Mosquitto's topic names and payload formats, read by Mosquitto's own
 * mosquitto_sub; the SysTree's publishing rules (only changed values, maxima only when they grew,
 * Mosquitto's load EWMAs) driven directly with injected snapshots; `sys.interval` 0 and its
 * validation; and a client cannot overwrite the tree.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { describe, test } from 'node:test'
import { Broker, type BrokerStats } from '../../src/index.js'
import { collectStats } from '../../src/metrics/collect.js'
import { Counters } from '../../src/metrics/counters.js'
import { SysTree } from '../../src/metrics/sys-tree.js'
import { ping, skipWithout, startBroker, Waiters, withBroker } from '../helpers/index.js'

const ROOT = '$SYS/broker'
const LOAD_NAMES = [
  'messages/received', 'messages/sent', 'publish/dropped', 'publish/received', 'publish/sent',
  'bytes/received', 'bytes/sent', 'sockets', 'connections',
]
const LOAD_TOPICS = LOAD_NAMES.flatMap((name) => ['1min', '5min', '15min'].map((p) => `${ROOT}/load/${name}/${p}`))
/** The topics holding a plain integer. */
const COUNT_TOPICS = [
  'clients/total', 'clients/maximum', 'clients/disconnected', 'clients/inactive', 'clients/connected', 'clients/active', 'clients/expired',
  'messages/stored', 'messages/received', 'messages/sent',
  'store/messages/count', 'store/messages/bytes',
  'subscriptions/count', 'shared_subscriptions/count', 'retained messages/count',
  'heap/current', 'heap/maximum',
  'bytes/received', 'bytes/sent',
  'publish/bytes/received', 'publish/bytes/sent',
  'publish/messages/received', 'publish/messages/sent', 'publish/messages/dropped',
  'connections/socket/count',
].map((t) => `${ROOT}/${t}`)
const ALL_TOPICS = [`${ROOT}/version`, `${ROOT}/uptime`, ...COUNT_TOPICS, ...LOAD_TOPICS]

/** The payload format Mosquitto uses for a topic. */
function format(topic: string): RegExp {
  if (topic === `${ROOT}/version`) return /^culex version \d+\.\d+\.\d+/
  if (topic === `${ROOT}/uptime`) return /^\d+ seconds$/
  if (topic.startsWith(`${ROOT}/load/`)) return /^\d+\.\d\d$/
  return /^\d+$/
}

const skip = skipWithout('mosquitto_sub')

describe('$SYS tree read by mosquitto_sub', { skip, timeout: 20_000 }, () => {
  test('every Mosquitto topic arrives retained, in its format; then a refresh arrives live', async () => {
    assert.equal(ALL_TOPICS.length, 54)
    const b = await startBroker({ sys: { interval: 1 } })
    try {
      // 54 retained messages, then one more: a refresh (uptime at least) delivered live, RETAIN 0.
      const child = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-t', '$SYS/#', '-F', '%r|%t|%p', '-C', '55', '-W', '10'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
      const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
      assert.equal(code, 0, `mosquitto_sub failed: ${stderr}`)
      const lines = stdout.trimEnd().split('\n').map((line) => {
        const [retain, topic, ...rest] = line.split('|')
        return { retain, topic: topic as string, payload: rest.join('|') }
      })
      assert.equal(lines.length, 55, stdout)
      const retained = lines.slice(0, 54)
      for (const { retain, topic, payload } of retained) {
        assert.equal(retain, '1', `${topic} arrives retained`)
        assert.match(payload, format(topic), `${topic} = ${JSON.stringify(payload)}`)
      }
      assert.deepEqual(retained.map((l) => l.topic).sort(), [...ALL_TOPICS].sort(), 'exactly the Mosquitto topics, each once')
      const live = lines[54] as (typeof lines)[number]
      assert.equal(live.retain, '0', `a refresh is delivered live: ${JSON.stringify(live)}`)
      assert.ok(ALL_TOPICS.includes(live.topic), live.topic)
      assert.match(live.payload, format(live.topic))
    } finally {
      await b.close()
    }
  })
})

describe('$SYS tree on a live broker', { timeout: 20_000 }, () => {
  test('a value that changed is re-published at the next refresh (clients/connected 0 -> 1), and not again after', async () => {
    await withBroker({ sys: { interval: 1 } }, async (b) => {
      // In-process subscribers: they are no clients, so nothing is connected until the test says.
      const connected: string[] = []
      let uptimes = 0
      const wake = new Waiters()
      await b.broker.subscribe(`${ROOT}/clients/connected`, (m) => void (connected.push(m.payload.toString()), wake.notify()), { retained: true })
      await b.broker.subscribe(`${ROOT}/uptime`, () => void (uptimes++, wake.notify()), { retained: true })
      assert.deepEqual(connected, ['0'], 'the retained value: no client yet')
      await b.connect({ clientId: 'watcher' })
      await wake.until(() => connected.includes('1'), 5000, 'clients/connected 1')
      // The next refresh (its uptime) re-publishes nothing for clients/connected: it did not change.
      const seen = uptimes
      await wake.until(() => uptimes > seen, 5000, 'the next refresh')
      assert.deepEqual(connected, ['0', '1'])
    })
  })

  test('a client cannot overwrite the tree: its retained $SYS publishes are dropped, the broker values stay', async () => {
    await withBroker({ sys: { interval: 60 } }, async (b) => {
      const liar = await b.connect({ clientId: 'liar' })
      await liar.publishAsync(`${ROOT}/version`, 'fake', { qos: 1, retain: true })
      await liar.publishAsync(`${ROOT}/clients/connected`, '999', { qos: 1, retain: true })
      const reader = await b.connectRecorded({ clientId: 'reader' })
      await reader.client.subscribeAsync([`${ROOT}/version`, `${ROOT}/clients/connected`], { qos: 0 })
      await reader.inbox.waitCount(2)
      await ping(reader.client)
      const got = Object.fromEntries(reader.inbox.messages.map((m) => [m.topic, m.payload]))
      assert.match(got[`${ROOT}/version`] ?? '', /^culex version \d+\.\d+\.\d+/)
      assert.equal(got[`${ROOT}/clients/connected`], '0', 'the value of the last refresh (at start), not the client\'s')
      assert.equal(reader.inbox.messages.length, 2)
    })
  })

  test('sys.interval 0: no $SYS topic at all (a $SYS/# subscriber gets only the host\'s marker)', async () => {
    await withBroker({ sys: { interval: 0 } }, async (b) => {
      const sub = await b.connectRecorded({ clientId: 'sys-watcher' })
      await sub.client.subscribeAsync('$SYS/#', { qos: 0 })
      await b.broker.publish({ topic: '$SYS/fence', payload: 'fence' })
      await sub.inbox.waitFor('fence')
      assert.deepEqual(sub.inbox.messages.map((m) => m.topic), ['$SYS/fence'])
    })
  })

  test('an invalid sys.interval throws a RangeError', () => {
    for (const interval of [-1, 1.5, 86_401, Number.NaN]) {
      assert.throws(() => new Broker({ sys: { interval } }), RangeError, `interval ${interval}`)
    }
  })
})

/** A snapshot with every total at 0, taken at `time` (ms), heap figures fixed. */
function zeroStats(time: number): BrokerStats {
  const source = {
    counters: new Counters(),
    startedAt: time,
    nodeId: undefined,
    sessions: new Map(),
    connections: [],
    connectionCount: 0,
    connectedCount: 0,
    retainedCount: 0,
    bridges: [],
  }
  const s = collectStats(source, { ready: true, draining: false }, time)
  return { ...s, memory: { heapUsed: 1000, heapMaximum: 1000, rss: 5000 } }
}

/** `s` some seconds later, with changes. */
function later(s: BrokerStats, seconds: number, patch: Partial<BrokerStats> = {}): BrokerStats {
  return { ...s, time: s.time + seconds * 1000, uptimeSeconds: s.uptimeSeconds + seconds, ...patch }
}

/** A SysTree publishing into an array. */
function tree(first: BrokerStats): { sys: SysTree; published: Array<[string, string]>; take(): Array<[string, string]> } {
  const published: Array<[string, string]> = []
  const sys = new SysTree(10, () => first, (topic, payload) => published.push([topic, payload]))
  return {
    sys,
    published,
    take: () => published.splice(0, published.length),
  }
}

describe('SysTree (driven with injected snapshots)', () => {
  test('start publishes every topic once; later refreshes publish only uptime and the values that changed', () => {
    const s0 = zeroStats(1_000_000)
    const t = tree(s0)
    t.sys.start()
    t.sys.stop()
    const initial = t.take()
    assert.deepEqual(initial.map(([topic]) => topic).sort(), [...ALL_TOPICS].sort())
    for (const [topic, payload] of initial) assert.match(payload, format(topic), topic)

    t.sys.update(later(s0, 10))
    assert.deepEqual(t.take(), [[`${ROOT}/uptime`, '10 seconds']], 'nothing changed but the uptime')

    const s2 = later(s0, 20, { clients: { ...s0.clients, connected: 1, total: 1 } })
    t.sys.update(s2)
    assert.deepEqual(new Map(t.take()), new Map([
      [`${ROOT}/uptime`, '20 seconds'],
      [`${ROOT}/clients/total`, '1'],
      [`${ROOT}/clients/connected`, '1'],
      [`${ROOT}/clients/active`, '1'],
    ]))

    t.sys.update(later(s2, 10))
    assert.deepEqual(t.take(), [[`${ROOT}/uptime`, '30 seconds']], 'the same values again: not re-published')
  })

  test('subscriptions/count leaves out the shared subscriptions, which shared_subscriptions/count has, as Mosquitto counts them', () => {
    const s0 = zeroStats(1_000_000)
    const t = tree(s0)
    t.sys.start()
    t.sys.stop()
    t.take()
    t.sys.update(later(s0, 10, { subscriptions: { total: 5, shared: 2 } }))
    const published = new Map(t.take())
    assert.equal(published.get(`${ROOT}/subscriptions/count`), '3')
    assert.equal(published.get(`${ROOT}/shared_subscriptions/count`), '2')
  })

  test('maxima are published only when they grew', () => {
    const s0 = zeroStats(2_000_000)
    const t = tree(s0)
    t.sys.update(s0, true)
    t.take()
    const grown = later(s0, 10, { clients: { ...s0.clients, maximum: 5 }, memory: { heapUsed: 3000, heapMaximum: 3000, rss: 5000 } })
    t.sys.update(grown)
    const first = new Map(t.take())
    assert.equal(first.get(`${ROOT}/clients/maximum`), '5')
    assert.equal(first.get(`${ROOT}/heap/maximum`), '3000')
    assert.equal(first.get(`${ROOT}/heap/current`), '3000')

    // Lower maxima are not published; the current heap, which is no maximum, is.
    const lower = later(grown, 10, { clients: { ...s0.clients, maximum: 3 }, memory: { heapUsed: 2000, heapMaximum: 2000, rss: 5000 } })
    t.sys.update(lower)
    const second = new Map(t.take())
    assert.equal(second.has(`${ROOT}/clients/maximum`), false)
    assert.equal(second.has(`${ROOT}/heap/maximum`), false)
    assert.equal(second.get(`${ROOT}/heap/current`), '2000')

    // 4 grew from the last snapshot (3), but not past the highest published (5): not published.
    const four = later(lower, 10, { clients: { ...s0.clients, maximum: 4 } })
    t.sys.update(four)
    assert.equal(new Map(t.take()).has(`${ROOT}/clients/maximum`), false)

    // Growing past the highest published value publishes again.
    const higher = later(four, 10, { clients: { ...s0.clients, maximum: 6 }, memory: { heapUsed: 2000, heapMaximum: 4000, rss: 5000 } })
    t.sys.update(higher)
    const third = new Map(t.take())
    assert.equal(third.get(`${ROOT}/clients/maximum`), '6')
    assert.equal(third.get(`${ROOT}/heap/maximum`), '4000')
  })

  test("loads are Mosquitto's EWMAs of per-minute rates: 60 packets over 60 s from 0 -> 1min 37.93, 5min 10.88, 15min 3.87", () => {
    const s0 = zeroStats(3_000_000)
    const t = tree(s0)
    t.sys.update(s0, true)
    t.take()
    const sixty = later(s0, 60, { packets: { ...s0.packets, received: { ...s0.packets.received, pingreq: 60 } } })
    t.sys.update(sixty)
    const loads = new Map(t.take().filter(([topic]) => topic.includes('/load/')))
    const expected = (period: number): string => (60 * (1 - Math.exp(-60 / period))).toFixed(2)
    assert.equal(expected(60), '37.93')
    assert.deepEqual(loads, new Map([
      [`${ROOT}/load/messages/received/1min`, '37.93'],
      [`${ROOT}/load/messages/received/5min`, expected(300)],
      [`${ROOT}/load/messages/received/15min`, expected(900)],
    ]), 'only the loads that moved, to 2 decimals')
    assert.equal(expected(300), '10.88')
    assert.equal(expected(900), '3.87')

    // A quiet minute after: each load decays by e^(-60/P).
    t.sys.update(later(sixty, 60))
    const decayed = new Map(t.take().filter(([topic]) => topic.includes('/load/')))
    const decay = (period: number): string => (60 * (1 - Math.exp(-60 / period)) * Math.exp(-60 / period)).toFixed(2)
    assert.equal(decayed.get(`${ROOT}/load/messages/received/1min`), decay(60))
    assert.equal(decay(60), '13.95')
    assert.equal(decayed.get(`${ROOT}/load/messages/received/5min`), decay(300))
    assert.equal(decayed.get(`${ROOT}/load/messages/received/15min`), decay(900))
  })
})
