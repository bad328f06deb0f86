/**
 * `broker.stats()` as real clients act on a real socket: packets, bytes and messages by type and
 * QoS, CONNACK codes, disconnect reasons, denials, drops by reason, clients, and the session
 * views (`broker.sessions`, `getSession`, `getSubscriptions`).
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { describe, test } from 'node:test'
import type { BrokerStats } from '../../src/index.js'
import { disconnected, leave, ping, startBroker, withBroker, type TestBroker } from '../helpers/index.js'

/** Every packet type, at 0: what a snapshot reports for types nothing was counted for. */
const NONE = {
  connect: 0, connack: 0, publish: 0, puback: 0, pubrec: 0, pubrel: 0, pubcomp: 0,
  subscribe: 0, suback: 0, unsubscribe: 0, unsuback: 0, pingreq: 0, pingresp: 0, disconnect: 0, auth: 0,
}

function total(values: Readonly<Record<string, number>>): number {
  return Object.values(values).reduce((a, b) => a + b, 0)
}

/** A publisher from a raw 3.1.1 client: QoS 1, waiting for PUBACK (the broker has routed it). */
async function rawPublishQos1(b: TestBroker, clientId: string, topic: string, payloads: string[]): Promise<void> {
  const { raw } = await b.rawConnect({ clientId }, 4)
  let id = 0
  for (const payload of payloads) {
    raw.publish(topic, payload, 1, ++id)
    await raw.take('puback', (p) => p.packetId === id)
  }
  await raw.drop(b, clientId)
}

describe('broker.stats()', { timeout: 20_000 }, () => {
  test('QoS 0/1/2 messages by QoS, packets by type and their bytes, as two clients exchange them', async () => {
    await withBroker({}, async (b) => {
      const sub = await b.connectRecorded({ clientId: 'sub' })
      await sub.client.subscribeAsync('count/#', { qos: 2 })
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('count/a', 'q0', { qos: 0 })
      await pub.publishAsync('count/a', 'q1', { qos: 1 })
      // Resolves at PUBCOMP: the broker has the PUBREL.
      await pub.publishAsync('count/a', 'q2', { qos: 2 })
      await sub.inbox.waitCount(3)
      // The subscriber's PUBACK and PUBCOMP left before this PINGREQ: the broker has handled them.
      await ping(sub.client)

      const s: BrokerStats = b.broker.stats()
      assert.deepEqual(s.messages.received, [1, 1, 1], 'messages received by QoS')
      assert.deepEqual(s.messages.sent, [1, 1, 1], 'messages sent by QoS')
      assert.deepEqual(s.packets.received, { ...NONE, connect: 2, subscribe: 1, publish: 3, puback: 1, pubrec: 1, pubrel: 1, pubcomp: 1, pingreq: 1 })
      assert.deepEqual(s.packets.sent, { ...NONE, connack: 2, suback: 1, publish: 3, puback: 1, pubrec: 1, pubrel: 1, pubcomp: 1, pingresp: 1 })
      for (const type of ['connect', 'subscribe', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'pingreq'] as const) {
        assert.ok(s.bytes.receivedByType[type] > 0, `bytes received for ${type}`)
      }
      for (const type of ['connack', 'suback', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'pingresp'] as const) {
        assert.ok(s.bytes.sentByType[type] > 0, `bytes sent for ${type}`)
      }
      // Fixed-size packets, byte-exact: PINGREQ/PINGRESP 2 bytes, 3.1.1 CONNACK and the acks 4.
      assert.equal(s.bytes.receivedByType.pingreq, 2)
      assert.equal(s.bytes.sentByType.pingresp, 2)
      assert.equal(s.bytes.sentByType.connack, 8)
      assert.equal(s.bytes.sentByType.puback, 4)
      assert.equal(s.bytes.receivedByType.pubrel, 4)
      assert.equal(s.bytes.received, total(s.bytes.receivedByType), 'bytes received = the sum by type')
      assert.equal(s.bytes.sent, total(s.bytes.sentByType), 'bytes sent = the sum by type')
      assert.equal(total(s.messages.dropped), 0, 'nothing dropped')
    })
  })

  test("connects by CONNACK code: '0' for accepted, '4' (3.1.1) and '134' (MQTT 5) for refused credentials; denied.connect", async () => {
    await withBroker({ authenticate: ({ username }) => username !== 'bad' }, async (b) => {
      await b.connect({ clientId: 'ok-1' })
      await b.connect({ clientId: 'ok-2', protocolVersion: 5 })
      const v4 = await b.raw(4)
      assert.equal((await v4.connect({ clientId: 'bad-4', username: 'bad' })).returnCode, 4)
      const v5 = await b.raw(5)
      assert.equal((await v5.connect({ clientId: 'bad-5', username: 'bad' })).returnCode, 0x86)
      await v4.waitClosed()
      await v5.waitClosed()
      const s = b.broker.stats()
      assert.deepEqual(s.connects, { '0': 2, '4': 1, '134': 1 })
      assert.equal(s.denied.connect, 2)
      // Refused connections were never clients: no disconnect is counted for them.
      assert.equal(total(s.disconnects), 0)
    })
  })

  test("disconnects by reason: 'disconnect', 'closed-by-host', 'socket-closed'", async () => {
    await withBroker({}, async (b) => {
      const polite = await b.connect({ clientId: 'polite' })
      await b.connect({ clientId: 'kicked' })
      const { raw } = await b.rawConnect({ clientId: 'dropped' })
      await leave(b, polite)
      const kicked = disconnected(b, 'kicked')
      const client = b.broker.getClient('kicked')
      assert.ok(client !== undefined, 'getClient finds a connected client')
      assert.equal(client.id, 'kicked')
      client.close()
      await kicked
      await raw.drop(b, 'dropped')
      const d = b.broker.stats().disconnects
      assert.equal(d.disconnect, 1)
      assert.equal(d['closed-by-host'], 1)
      assert.equal(d['socket-closed'], 1)
      assert.equal(total(d), 3, `no other reason counted: ${JSON.stringify(d)}`)
    })
  })

  test('denied.publish, denied.subscribe (hooks) and dropped.not_authorized', async () => {
    const options = {
      authorizePublish: (_c: unknown, m: { topic: string }) => !m.topic.startsWith('no/'),
      authorizeSubscribe: (_c: unknown, s: { topicFilter: string }) => !s.topicFilter.startsWith('secret/'),
    }
    await withBroker(options, async (b) => {
      const c = await b.connect({ clientId: 'c' })
      await assert.rejects(c.subscribeAsync('secret/#', { qos: 1 }))
      await c.subscribeAsync('open/#', { qos: 1 })
      // 3.1.1: a refused QoS 1 PUBLISH is still acknowledged [MQTT-3.3.5-2]
      await c.publishAsync('no/way', 'x', { qos: 1 })
      await c.publishAsync('open/yes', 'y', { qos: 1 })
      const s = b.broker.stats()
      assert.equal(s.denied.publish, 1)
      assert.equal(s.denied.subscribe, 1)
      assert.equal(s.denied.connect, 0)
      assert.equal(s.denied.deliver, 0)
      assert.equal(s.messages.dropped.not_authorized, 1)
      assert.deepEqual(s.messages.received, [0, 2, 0])
    })
  })

  test('dropped.queue_full and dropped.offline for an offline persistent session; sessions, getSession, getSubscriptions, clients', async () => {
    const b = await startBroker({ limits: { maxQueued: 2 } })
    try {
      const sleeper = await b.connect({ clientId: 'sleeper', clean: false })
      await sleeper.subscribeAsync('q/#', { qos: 1 })
      await leave(b, sleeper)
      // 5 QoS 1 messages: 2 fit in the queue, 3 do not.
      await rawPublishQos1(b, 'pub-1', 'q/one', ['m1', 'm2', 'm3', 'm4', 'm5'])
      // QoS 0 to a session without a connection is dropped.
      const { raw: pub0 } = await b.rawConnect({ clientId: 'pub-0' }, 4)
      pub0.publish('q/zero', 'z', 0)
      await pub0.ping()
      await pub0.drop(b, 'pub-0')

      const s = b.broker.stats()
      assert.equal(s.messages.dropped.queue_full, 3)
      assert.equal(s.messages.dropped.offline, 1)
      assert.deepEqual(s.queued, { count: 2, bytes: 2 * ('m1'.length + 'q/one'.length) })
      assert.deepEqual(s.clients, { connected: 0, maximum: 1, disconnected: 1, total: 1, expired: 0 })
      assert.deepEqual(s.subscriptions, { total: 1, shared: 0 })

      const summary = b.broker.getSession('sleeper')
      assert.ok(summary !== undefined)
      assert.equal(summary.persistent, true)
      assert.equal(summary.connected, false)
      assert.equal(summary.queued, 2)
      assert.equal(summary.subscriptions, 1)
      assert.equal(summary.dropped, 4)
      assert.deepEqual(b.broker.sessions.map((x) => x.clientId), ['sleeper'], 'clean sessions of gone clients are not listed')
      const subs = b.broker.getSubscriptions('sleeper')
      assert.deepEqual(subs?.map((x) => [x.topicFilter, x.qos]), [['q/#', 1]])
      assert.equal(b.broker.getSubscriptions('nobody'), undefined)
      assert.equal(b.broker.getSession('nobody'), undefined)
      assert.equal(b.broker.getClient('sleeper'), undefined, 'not connected: getClient finds nothing')

      // Back online: the two queued messages arrive, and the session is connected again.
      const back = await b.connectRecorded({ clientId: 'sleeper', clean: false })
      await back.inbox.waitCount(2)
      assert.deepEqual(back.inbox.messages.map((m) => m.payload), ['m1', 'm2'])
      assert.equal(b.broker.getSession('sleeper')?.connected, true)
      assert.deepEqual(b.broker.clients.map((c) => c.id), ['sleeper'])
    } finally {
      await b.close()
    }
  })

  test('clients.maximum keeps the most connected at once; clients.connected follows', async () => {
    await withBroker({}, async (b) => {
      const one = await b.connect({ clientId: 'one' })
      const two = await b.connect({ clientId: 'two' })
      await b.connect({ clientId: 'three' })
      assert.equal(b.broker.stats().clients.maximum, 3)
      await leave(b, one)
      await leave(b, two)
      const s = b.broker.stats()
      assert.equal(s.clients.connected, 1)
      assert.equal(s.clients.maximum, 3)
      assert.equal(s.clients.total, 1)
      await b.connect({ clientId: 'four' })
      assert.equal(b.broker.stats().clients.maximum, 3, 'two connected now: the maximum stays 3')
      assert.equal(b.broker.connectedClients, 2)
    })
  })

  test('sockets refused past maxConnections (and its handshake headroom) are counted as max_connections', async () => {
    await withBroker({ limits: { maxConnections: 1 } }, async (b) => {
      const sockets: net.Socket[] = []
      try {
        // 1 connection and 16 more in their handshake are held; the 18th is closed at once.
        const closedOne = new Promise<void>((resolve) => {
          for (let i = 0; i < 18; i++) {
            const socket = net.connect(b.port, '127.0.0.1')
            socket.on('error', () => {})
            socket.once('close', () => resolve())
            sockets.push(socket)
          }
        })
        await closedOne
        assert.equal(b.broker.stats().sockets.refused.max_connections, 1)
      } finally {
        for (const socket of sockets) socket.destroy()
      }
    })
  })
})
