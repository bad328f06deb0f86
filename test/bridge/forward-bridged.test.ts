/**
 * `forwardBridged: false`: an outgoing bridge does not get the messages that reached Culex from
 * another broker (an incoming bridge connection, with the bridge flag; or another outgoing
 * bridge's local client, publishing what came in), and what it brings in does not go to incoming
 * bridge connections, so two bridges in opposite directions on the same topics cannot loop. Culex
 * to Culex, in-process, without Mosquitto (test/bridge/loop.test.ts has the loop with Mosquitto).
 *
 * "Does not reach the remote" is proven with a fence: the bridge's session is a FIFO queue and the
 * bridge forwards one message at a time, in order, so once a normal message published (and routed)
 * after the bridged one has reached the remote's subscriber, the bridged one would have too.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import { Broker, tcp, type BridgeHandle, type BridgeOptions } from '../../src/index.js'
import { SqlitePersistence } from '../../src/persistence/sqlite.js'
import { Inbox, lp, RawMqtt, rawConnect, startBroker, until } from '../helpers/index.js'

/** A broker and its TCP port. */
interface Listening {
  broker: Broker
  port: number
}

/** An outgoing bridge `t/#` to the broker on `port`. */
function upOptions(port: number, forwardBridged: boolean | undefined): BridgeOptions {
  const options: BridgeOptions = { name: 'up', url: `mqtt://127.0.0.1:${port}`, topics: [{ filter: 't/#', direction: 'out', qos: 1 }], reconnectPeriod: 20, maxReconnectPeriod: 100 }
  if (forwardBridged !== undefined) options.forwardBridged = forwardBridged
  return options
}

/** Waits until a bridge is connected to its remote. */
async function bridgeUp(handle: BridgeHandle): Promise<void> {
  await until(() => handle.connected, 10_000, `bridge ${handle.name} up`)
}

/** An `mqtt` client subscribed to `t/#` at QoS 1, with its inbox. */
async function subscriber(port: number, clientId: string): Promise<{ client: MqttClient; inbox: Inbox }> {
  const client = await connectTo(port, clientId)
  const inbox = new Inbox(client)
  await client.subscribeAsync('t/#', { qos: 1 })
  return { client, inbox }
}

/** An `mqtt` 3.1.1 client, connected. */
async function connectTo(port: number, clientId: string): Promise<MqttClient> {
  const client = mqtt.connect({ host: '127.0.0.1', port, clientId, protocolVersion: 4, reconnectPeriod: 0 })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
  })
  client.on('error', () => {})
  return client
}

/** Publishes `payload` on `t/<payload>` over a raw connection with the 3.1.1 bridge flag (level 0x84), as a Mosquitto bridge does; resolves at its PUBACK (it has been routed). */
async function publishAsBridge(b: Listening, clientId: string, payload: string): Promise<void> {
  const raw = await RawMqtt.tcp(b.port, 4)
  try {
    raw.write(rawConnect({ name: 'MQTT', level: 0x84, flags: 0x02, payload: [lp(clientId)] }))
    const connack = await raw.next('connack')
    assert.equal(connack.returnCode, 0)
    assert.equal(b.broker.getClient(clientId)?.bridge, true, 'served as a bridge')
    raw.publish(`t/${payload}`, payload, 1, { packetId: 1 })
    await raw.take('puback')
  } finally {
    raw.destroy()
  }
}

/** Publishes a normal message `marker` on Culex and waits for it at the remote's subscriber: everything the bridge queued before it has arrived. */
async function fence(publisher: MqttClient, remote: Inbox, marker: string): Promise<void> {
  await publisher.publishAsync(`t/${marker}`, marker, { qos: 1 })
  await remote.waitFor(marker, 10_000)
}

/** A raw client connected with the bridge flag, as another broker's bridge pulling `t/#` from Culex (QoS 0: nothing to acknowledge). */
async function incomingBridgeSubscriber(b: Listening, clientId: string): Promise<RawMqtt> {
  const raw = await RawMqtt.tcp(b.port, 4)
  raw.write(rawConnect({ name: 'MQTT', level: 0x84, flags: 0x02, payload: [lp(clientId)] }))
  assert.equal((await raw.next('connack')).returnCode, 0)
  await raw.subscribe('t/#', 0)
  return raw
}

/** The payloads a raw client received, once `last` is among them (messages to one client stay in order). */
async function rawPayloads(raw: RawMqtt, last: string): Promise<string[]> {
  const payloads = (): string[] => raw.publishes().map((p) => p.payload.toString())
  await raw.until(() => payloads().includes(last), 10_000, () => `${last} at the incoming bridge; got ${JSON.stringify(payloads())}`)
  return payloads()
}

/**
 * Culex (`local`) with an outgoing bridge `up` (`t/#` out) to `remote`, an incoming-only bridge
 * `down` (`t/#` in) from `source`, and another broker's bridge connected to it, subscribed to `t/#`
 * (`incoming`); each broker has a subscriber to `t/#`, Culex and the source a normal publisher.
 */
async function setUp(up: boolean | undefined, down: boolean | undefined) {
  const remote = await startBroker()
  const source = await startBroker()
  const local = await startBroker()
  const clients: MqttClient[] = []
  const raws: RawMqtt[] = []
  const close = async (): Promise<void> => {
    for (const c of clients) await c.endAsync(true)
    for (const r of raws) r.destroy()
    await local.close()
    await remote.close()
    await source.close()
  }
  try {
    const upHandle = await local.broker.bridge(upOptions(remote.port, up))
    const downOptions: BridgeOptions = { name: 'down', url: `mqtt://127.0.0.1:${source.port}`, topics: [{ filter: 't/#', direction: 'in', qos: 1 }], reconnectPeriod: 20 }
    if (down !== undefined) downOptions.forwardBridged = down
    const downHandle = await local.broker.bridge(downOptions)
    await bridgeUp(upHandle)
    await bridgeUp(downHandle)
    await until(() => (source.broker.getSubscriptions('culex-bridge-down') ?? []).length > 0, 10_000, "the down bridge's subscription on the source")
    const atRemote = await subscriber(remote.port, 'remote-sub')
    const atLocal = await subscriber(local.port, 'local-sub')
    const publisher = await connectTo(local.port, 'local-pub')
    const sourcePub = await connectTo(source.port, 'source-pub')
    clients.push(atRemote.client, atLocal.client, publisher, sourcePub)
    const incoming = await incomingBridgeSubscriber(local, 'other-broker-bridge')
    raws.push(incoming)
    return { local, remote, source, atRemote: atRemote.inbox, atLocal: atLocal.inbox, publisher, sourcePub, incoming, close }
  } catch (error) {
    await close()
    throw error
  }
}

/**
 * Publishes, on Culex: `normal` from a client, `from-incoming-bridge` from another broker's bridge
 * (bridge flag), `from-outgoing-bridge` on the source (it comes in over `down`, published on Culex by
 * `bridge:down`), then `fence` from the client; returns what the remote's subscriber and the
 * incoming bridge subscriber got, once the fence reached both.
 */
async function exchange(s: Awaited<ReturnType<typeof setUp>>): Promise<{ remote: string[]; incoming: string[] }> {
  await s.publisher.publishAsync('t/normal', 'normal', { qos: 1 })
  await s.atLocal.waitFor('normal')
  await publishAsBridge(s.local, 'mosquitto-bridge', 'from-incoming-bridge')
  await s.atLocal.waitFor('from-incoming-bridge')
  await s.sourcePub.publishAsync('t/from-outgoing-bridge', 'from-outgoing-bridge', { qos: 1 })
  await s.atLocal.waitFor('from-outgoing-bridge', 10_000)
  // Everything above was routed on Culex (its subscriber has it): the fence comes after it everywhere.
  await fence(s.publisher, s.atRemote, 'fence')
  const incoming = await rawPayloads(s.incoming, 'fence')
  assert.deepEqual(s.atLocal.messages.map((m) => m.payload), ['normal', 'from-incoming-bridge', 'from-outgoing-bridge', 'fence'], "Culex's own subscriber gets everything")
  return { remote: s.atRemote.messages.map((m) => m.payload), incoming }
}

describe('forwardBridged', { timeout: 60_000 }, () => {
  test("false on both bridges: only Culex's own messages go out over `up`; what `down` brings in does not go to an incoming bridge", async () => {
    const s = await setUp(false, false)
    try {
      const got = await exchange(s)
      assert.deepEqual(got.remote, ['normal', 'fence'], 'the remote gets neither bridged message')
      // From one incoming bridge to another is still forwarded (a chain): only `down`'s false keeps its messages from them.
      assert.deepEqual(got.incoming, ['normal', 'from-incoming-bridge', 'fence'], "the incoming bridge does not get what `down` brought in")
      assert.equal(s.local.broker.getSession('bridge:up')?.queued, 0)
    } finally {
      await s.close()
    }
  })

  test("false on `up` only: it refuses both bridged messages; the incoming bridge gets what `down` brought in", async () => {
    const s = await setUp(false, undefined)
    try {
      const got = await exchange(s)
      assert.deepEqual(got.remote, ['normal', 'fence'])
      assert.deepEqual(got.incoming, ['normal', 'from-incoming-bridge', 'from-outgoing-bridge', 'fence'])
    } finally {
      await s.close()
    }
  })

  for (const forwardBridged of [undefined, true] as const) {
    test(`${forwardBridged === undefined ? 'default (true)' : 'true'} on both bridges: every message goes everywhere`, async () => {
      const s = await setUp(forwardBridged, forwardBridged)
      try {
        const got = await exchange(s)
        assert.deepEqual(got.remote, ['normal', 'from-incoming-bridge', 'from-outgoing-bridge', 'fence'])
        assert.deepEqual(got.incoming, ['normal', 'from-incoming-bridge', 'from-outgoing-bridge', 'fence'])
      } finally {
        await s.close()
      }
    })
  }

  test('false holds for the session restored from SQLite after a restart; a later bridge of that name with true lifts it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'culex-forward-bridged-'))
    const dbPath = join(dir, 'culex.db')
    const remote = await startBroker()
    const start = async (): Promise<Listening> => {
      const broker = new Broker({ sys: { interval: 0 }, persistence: new SqlitePersistence({ path: dbPath }) })
      const address = (await broker.listen(tcp({ port: 0, host: '127.0.0.1' }))).address()
      if (address === null || typeof address === 'string') throw new Error('no TCP address')
      return { broker, port: address.port }
    }
    const clients: MqttClient[] = []
    let local: Listening | undefined
    try {
      const atRemote = await subscriber(remote.port, 'remote-sub')
      clients.push(atRemote.client)
      local = await start()
      await bridgeUp(await local.broker.bridge(upOptions(remote.port, false)))
      await local.broker.close()

      local = await start()
      assert.ok(local.broker.getSession('bridge:up') !== undefined, 'the session was restored')
      const up = await local.broker.bridge(upOptions(remote.port, false))
      await bridgeUp(up)
      const publisher = await connectTo(local.port, 'local-pub')
      clients.push(publisher)
      await publishAsBridge(local, 'mosquitto-bridge', 'bridged-after-restart')
      await fence(publisher, atRemote.inbox, 'fence-1')
      assert.deepEqual(atRemote.inbox.messages.map((m) => m.payload), ['fence-1'])

      // Each bridge of that name sets it again: now true. (Closed once fence-1 is acknowledged
      // locally, or it would be sent again: at least once.)
      await until(() => local?.broker.getSession('bridge:up')?.inflight === 0, 10_000, 'fence-1 acknowledged to Culex')
      await up.close()
      await bridgeUp(await local.broker.bridge(upOptions(remote.port, true)))
      await publishAsBridge(local, 'mosquitto-bridge', 'bridged-forwarded')
      await fence(publisher, atRemote.inbox, 'fence-2')
      assert.deepEqual(atRemote.inbox.messages.map((m) => m.payload), ['fence-1', 'bridged-forwarded', 'fence-2'])
    } finally {
      for (const c of clients) await c.endAsync(true)
      await local?.broker.close()
      await remote.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
