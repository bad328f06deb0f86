/**
 * Outgoing bridges (`broker.bridge`) against a real Mosquitto: both directions with prefixes and no
 * loop; the remote stopped and restarted while QoS 1 messages wait in the Culex session (none
 * acknowledged early, all delivered in order); the $SYS state topic and events; and Culex itself
 * restarted on SQLite while messages wait. The mapping rules are checked without a broker.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import { Broker, tcp, type BridgeOptions } from '../../src/index.js'
import { mapIn, mapOut } from '../../src/bridge/mapping.js'
import { checkTopic, reconnectDelay } from '../../src/bridge/options.js'
import { SqlitePersistence } from '../../src/persistence/sqlite.js'
import { Inbox, startBroker, until, Waiters } from '../helpers/index.js'
import { findMosquitto, freePort } from '../helpers/index.js'
import { startMosquitto } from './mosquitto.js'

describe('bridge topic mapping (as Mosquitto)', () => {
  test('out strips the local prefix and adds the remote one; in the other way round; first match wins', () => {
    const routes = [
      checkTopic({ filter: 'sensors/#', direction: 'out', localPrefix: 'site/', remotePrefix: 'site1/' }, 0),
      checkTopic({ filter: 'commands/#', direction: 'in', qos: 2, localPrefix: 'cloud/', remotePrefix: 'site1/' }, 1),
      checkTopic({ filter: 'both/+' , direction: 'both' }, 2),
      checkTopic({ filter: '', direction: 'both', localPrefix: 'a/exact', remotePrefix: 'b/other' }, 3),
    ]
    assert.deepEqual(mapOut(routes, 'site/sensors/t'), { topic: 'site1/sensors/t', qos: 1 })
    assert.equal(mapOut(routes, 'sensors/t'), undefined, 'the local filter includes the local prefix')
    assert.equal(mapOut(routes, 'cloud/commands/x'), undefined, 'in topics do not go out')
    assert.deepEqual(mapIn(routes, 'site1/commands/x'), { topic: 'cloud/commands/x', qos: 2 })
    assert.equal(mapIn(routes, 'site1/sensors/t'), undefined, 'out topics do not come in')
    assert.deepEqual(mapOut(routes, 'both/x'), { topic: 'both/x', qos: 1 })
    assert.deepEqual(mapIn(routes, 'both/x'), { topic: 'both/x', qos: 1 })
    assert.deepEqual(mapOut(routes, 'a/exact'), { topic: 'b/other', qos: 1 }, 'an empty pattern maps one topic to another')
    assert.deepEqual(mapIn(routes, 'b/other'), { topic: 'a/exact', qos: 1 })
    assert.equal(routes[0]?.localFilter, 'site/sensors/#')
    assert.equal(routes[1]?.remoteFilter, 'site1/commands/#')
  })

  test('reconnection backoff: doubling from reconnectPeriod up to maxReconnectPeriod, each pause 50–100 % of that', () => {
    const full = [0, 1, 2, 3, 4, 5, 40].map((attempts) => reconnectDelay(attempts, 1000, 30_000, () => 0.999999))
    assert.deepEqual(full, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000])
    const least = [0, 3, 40].map((attempts) => reconnectDelay(attempts, 1000, 30_000, () => 0))
    assert.deepEqual(least, [500, 4000, 15_000], 'jitter takes up to half off')
    assert.equal(reconnectDelay(0, 1, 1, () => 0), 1, 'never 0')
  })

  test('invalid entries are refused as Mosquitto refuses them', () => {
    assert.throws(() => checkTopic({ filter: '' }, 0), /empty filter needs both/)
    assert.throws(() => checkTopic({ filter: 'x', localPrefix: 'a/+/' }, 0), /wildcards/)
    assert.throws(() => checkTopic({ filter: 'a/#/b' }, 0), /not a valid topic filter/)
    assert.throws(() => checkTopic({ filter: 'x', direction: 'up' as 'in' }, 0), /direction/)
  })
})

describe('broker.bridge without a remote', () => {
  test('resolves once its local side is up; messages wait unacknowledged in its session; names are unique; broker.close() closes it', async () => {
    const b = await startBroker()
    try {
      // A port nobody listens on: the remote never comes up.
      const options = bridgeOptions('nowhere', await freePort(), { reconnectPeriod: 20, maxReconnectPeriod: 100 })
      const handle = await b.broker.bridge(options)
      assert.equal(handle.connected, false)
      assert.equal(handle.localClientId, 'bridge:nowhere')
      assert.deepEqual(
        b.broker.getSubscriptions('bridge:nowhere')?.map((s) => [s.topicFilter, s.qos, s.noLocal, s.retainAsPublished]),
        [['sensors/#', 1, true, true], ['shared/#', 1, true, true]],
        'the out and both topics, QoS ≥ 1, No Local, Retain As Published',
      )
      await assert.rejects(b.broker.bridge(options), /already running/)
      await assert.rejects(b.broker.bridge({ ...options, name: 'x', url: 'http://example.com' }), /mqtt:\/\//)
      for (let i = 0; i < 5; i++) await b.broker.publish({ topic: `sensors/${i}`, payload: `${i}`, qos: 1 })
      await b.broker.publish({ topic: 'elsewhere', payload: 'not bridged', qos: 1 })
      const session = b.broker.getSession('bridge:nowhere')
      assert.equal((session?.inflight ?? 0) + (session?.queued ?? 0), 5)
      await b.broker.close()
      assert.equal(handle.connected, false)
    } finally {
      await b.close()
    }
  })
})

test('a bridge started while the broker closes fails, and does not hold up close()', async () => {
  const b = await startBroker()
  const starting = b.broker.bridge(bridgeOptions('late', await freePort()))
  const closing = b.broker.close()
  await assert.rejects(starting, /closed/)
  await closing
  await assert.rejects(b.broker.bridge(bridgeOptions('later', 1)), /closed/)
})

test("import 'culex-mqtt' does not load MQTT.js; the first broker.bridge does", () => {
  const script = `
    import { createRequire } from 'node:module'
    const require = createRequire(import.meta.url)
    const loaded = () => Object.keys(require.cache).some((k) => k.includes('/node_modules/mqtt/'))
    const { Broker } = await import('./src/index.ts')
    const before = loaded()
    const b = new Broker({ sys: { interval: 0 } })
    await b.bridge({ name: 'x', url: 'mqtt://127.0.0.1:1', topics: [{ filter: 'a' }] })
    console.log(JSON.stringify([before, loaded()]))
    await b.close()
  `
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: join(import.meta.dirname, '../..'), encoding: 'utf8' })
  assert.deepEqual(JSON.parse(out.trim()), [false, true])
})

const mosquitto = findMosquitto()

/** What a broker's bridge events and $SYS state messages said, in order. */
class BridgeWatch {
  readonly events: string[] = []
  readonly states: string[] = []
  readonly waiters = new Waiters()

  constructor(broker: Broker, name: string) {
    broker.on('bridgeUp', (n) => {
      if (n === name) this.push(this.events, 'up')
    })
    broker.on('bridgeDown', (n) => {
      if (n === name) this.push(this.events, 'down')
    })
  }

  /** Records the state topic's payloads (subscribe before starting the bridge). */
  async watchState(broker: Broker, name: string): Promise<void> {
    await broker.subscribe(`$SYS/broker/connection/${name}/state`, (m) => this.push(this.states, m.payload.toString()))
  }

  private push(list: string[], value: string): void {
    list.push(value)
    this.waiters.notify()
  }

  /** Waits until `events` ends with `event`, seen `count` times in all. */
  until(list: 'events' | 'states', value: string, count: number, ms = 10_000): Promise<void> {
    return this.waiters.until(() => this[list].filter((e) => e === value).length >= count, ms, () => `${list} ${value} x${count}; got ${JSON.stringify(this[list])}`)
  }
}

/** An MQTT.js client on Mosquitto (or Culex) with an inbox. */
async function client(port: number, clientId: string, filter: string, clean = true): Promise<{ client: MqttClient; inbox: Inbox }> {
  const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, clean, reconnectPeriod: 50, protocolVersion: 4 })
  const inbox = new Inbox(c)
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve())
    c.once('error', reject)
  })
  await c.subscribeAsync(filter, { qos: 1 })
  return { client: c, inbox }
}

function bridgeOptions(name: string, port: number, extra: Partial<BridgeOptions> = {}): BridgeOptions {
  return {
    name,
    url: `mqtt://127.0.0.1:${port}`,
    topics: [
      { filter: 'sensors/#', direction: 'out', qos: 1, localPrefix: '', remotePrefix: 'site1/' },
      { filter: 'commands/#', direction: 'in', qos: 1, localPrefix: 'cloud/', remotePrefix: 'site1/' },
      { filter: 'shared/#', direction: 'both', qos: 1 },
    ],
    reconnectPeriod: 50,
    maxReconnectPeriod: 400,
    ...extra,
  }
}

describe('broker.bridge against a real Mosquitto', { skip: mosquitto.skip, timeout: 60_000 }, () => {
  for (const protocolVersion of [4, 5] as const) {
    test(`MQTT ${protocolVersion === 4 ? '3.1.1 (bridge flag)' : '5 (no local)'}: out and in with prefixes, exactly once, no loop with both`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'culex-bridge-'))
      const mport = await freePort()
      const remote = await startMosquitto(mosquitto.path as string, dir, mport)
      const b = await startBroker()
      const clients: MqttClient[] = []
      try {
        const watch = new BridgeWatch(b.broker, 'cloud')
        const handle = await b.broker.bridge(bridgeOptions('cloud', mport, { protocolVersion }))
        await watch.until('events', 'up', 1)
        assert.equal(handle.connected, true)
        await remote.waitFor((l) => l.endsWith('Sending SUBACK to culex-bridge-cloud'), 'the bridge subscribed on Mosquitto')

        const onRemote = await client(mport, 'remote-sub', '#')
        const onCulex = await client(b.port, 'culex-sub', '#')
        clients.push(onRemote.client, onCulex.client)
        const remotePub = await mqtt.connectAsync(`mqtt://127.0.0.1:${mport}`, { clientId: 'remote-pub', protocolVersion: 4 })
        clients.push(remotePub)

        // Culex -> Mosquitto, with the remote prefix.
        await b.broker.publish({ topic: 'sensors/t1', payload: 'out-1', qos: 1 })
        const out = await onRemote.inbox.waitFor('out-1')
        assert.equal(out.topic, 'site1/sensors/t1')
        // Mosquitto -> Culex: the remote prefix stripped, the local prefix added.
        await remotePub.publishAsync('site1/commands/c1', 'in-1', { qos: 1 })
        const inbound = await onCulex.inbox.waitFor('in-1')
        assert.equal(inbound.topic, 'cloud/commands/c1')
        // both, each way.
        await b.broker.publish({ topic: 'shared/a', payload: 'both-from-culex', qos: 1 })
        await remotePub.publishAsync('shared/b', 'both-from-mosquitto', { qos: 1 })
        await onRemote.inbox.waitFor('both-from-culex')
        await onCulex.inbox.waitFor('both-from-mosquitto')

        // Fences: a marker each way, sent after everything above; an echo would come before it.
        await remotePub.publishAsync('shared/m', 'marker-in', { qos: 1 })
        await onCulex.inbox.waitFor('marker-in')
        await b.broker.publish({ topic: 'shared/m', payload: 'marker-out', qos: 1 })
        await onRemote.inbox.waitFor('marker-out')

        for (const payload of ['out-1', 'both-from-culex', 'both-from-mosquitto', 'marker-out']) {
          assert.equal(onRemote.inbox.withPayload(payload).length, 1, `${payload} reached the Mosquitto subscriber once: ${onRemote.inbox.summary()}`)
        }
        for (const payload of ['in-1', 'both-from-culex', 'both-from-mosquitto', 'marker-in']) {
          assert.equal(onCulex.inbox.withPayload(payload).length, 1, `${payload} reached the Culex subscriber once: ${onCulex.inbox.summary()}`)
        }
        assert.equal(onCulex.inbox.withPayload('out-1')[0]?.topic, 'sensors/t1', 'the out message did not come back under the remote prefix')
        assert.equal(onCulex.inbox.messages.filter((m) => m.topic.startsWith('site1/')).length, 0)
        await handle.close()
        assert.equal(handle.connected, false)
        assert.deepEqual(watch.events, ['up', 'down'])
      } finally {
        for (const c of clients) await c.endAsync(true)
        await b.close()
        await remote.stop()
        rmSync(dir, { recursive: true, force: true })
      }
    })
  }

  test('remote stopped: 50 QoS 1 messages wait unacknowledged in the Culex session and all arrive, in order, once it is back; $SYS state and events 1 → 0 → 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'culex-bridge-'))
    const mport = await freePort()
    let remote = await startMosquitto(mosquitto.path as string, dir, mport)
    const b = await startBroker()
    const clients: MqttClient[] = []
    try {
      const watch = new BridgeWatch(b.broker, 'cloud')
      await watch.watchState(b.broker, 'cloud')
      const handle = await b.broker.bridge(bridgeOptions('cloud', mport))
      await watch.until('events', 'up', 1)
      // A persistent subscriber on Mosquitto: its session (saved on SIGTERM) waits for it across the restart.
      const onRemote = await client(mport, 'remote-sub', 'site1/#', false)
      clients.push(onRemote.client)
      await b.broker.publish({ topic: 'sensors/warmup', payload: 'warmup', qos: 1 })
      await onRemote.inbox.waitFor('warmup')

      await remote.stop()
      await watch.until('events', 'down', 1)
      assert.equal(handle.connected, false)
      for (let i = 0; i < 50; i++) await b.broker.publish({ topic: `sensors/n/${i}`, payload: `m${i}`, qos: 1 })
      // Nothing acknowledged: all 50 are still in the bridge's session, in flight or queued.
      const session = b.broker.getSession('bridge:cloud')
      assert.equal(session?.persistent, true)
      assert.equal((session?.inflight ?? 0) + (session?.queued ?? 0), 50, 'no message was acknowledged while the remote was down')

      remote = await startMosquitto(mosquitto.path as string, dir, mport)
      await watch.until('events', 'up', 2)
      await onRemote.inbox.until((m) => m.filter((x) => x.topic.startsWith('site1/sensors/n/')).length >= 50, 20_000, '50 messages')
      const got = onRemote.inbox.messages.filter((x) => x.topic.startsWith('site1/sensors/n/')).map((x) => x.payload)
      assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => `m${i}`), 'every message, once, in order')
      await until(() => {
        const s = b.broker.getSession('bridge:cloud')
        return s !== undefined && s.inflight + s.queued === 0
      }, 5_000, 'the session emptied once the remote acknowledged')

      assert.deepEqual(watch.events, ['up', 'down', 'up'])
      // '0' when the bridge starts, then 1 → 0 → 1.
      await watch.until('states', '1', 2)
      assert.deepEqual(watch.states, ['0', '1', '0', '1'])
      // The state is retained: a late subscriber reads it.
      const late = await client(b.port, 'late', '$SYS/broker/connection/cloud/state')
      clients.push(late.client)
      const state = await late.inbox.waitFor('1')
      assert.equal(state.retain, true)
    } finally {
      for (const c of clients) await c.endAsync(true)
      await b.close()
      await remote.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('Culex restarted on SQLite while messages wait: they leave after the restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'culex-bridge-'))
    const mport = await freePort()
    const cport = await freePort()
    const dbPath = join(dir, 'culex.db')
    let remote = await startMosquitto(mosquitto.path as string, dir, mport)
    const clients: MqttClient[] = []
    const start = async (): Promise<Broker> => {
      const broker = new Broker({ sys: { interval: 0 }, persistence: new SqlitePersistence({ path: dbPath }) })
      await broker.listen(tcp({ port: cport, host: '127.0.0.1' }))
      return broker
    }
    let broker = await start()
    try {
      const watch = new BridgeWatch(broker, 'cloud')
      await broker.bridge(bridgeOptions('cloud', mport))
      await watch.until('events', 'up', 1)
      const onRemote = await client(mport, 'remote-sub', 'site1/#', false)
      clients.push(onRemote.client)

      await remote.stop()
      await watch.until('events', 'down', 1)
      for (let i = 0; i < 10; i++) await broker.publish({ topic: `sensors/r/${i}`, payload: `r${i}`, qos: 1 })
      await broker.close()

      remote = await startMosquitto(mosquitto.path as string, dir, mport)
      broker = await start()
      const session = broker.getSession('bridge:cloud')
      assert.equal((session?.inflight ?? 0) + (session?.queued ?? 0), 10, 'the 10 messages were restored with the session')
      const watch2 = new BridgeWatch(broker, 'cloud')
      await broker.bridge(bridgeOptions('cloud', mport))
      await watch2.until('events', 'up', 1)
      await onRemote.inbox.until((m) => m.filter((x) => x.topic.startsWith('site1/sensors/r/')).length >= 10, 20_000, '10 messages')
      const got = onRemote.inbox.messages.filter((x) => x.topic.startsWith('site1/sensors/r/')).map((x) => x.payload)
      assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `r${i}`))
    } finally {
      for (const c of clients) await c.endAsync(true)
      await broker.close()
      await remote.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
