/**
 * Retained messages over real sockets: stored per topic, replaced, deleted by an empty payload,
 * sent to new subscriptions with RETAIN set and to existing ones with RETAIN clear, matched by
 * wildcards, delivered at min(retained QoS, granted QoS). Normative references are to MQTT 3.1.1.
 *
 * "Nothing else arrived" is checked with a sentinel: after subscribing, a non-retained QoS 2 message
 * is published on a matching topic; retained messages for a subscription are sent right after its
 * SUBACK, so by the time the sentinel arrives every retained message has. (The sentinel is QoS 2
 * because the `mqtt` client emits a QoS 2 message only on PUBREL, after QoS 0/1 ones sent later.)
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { MqttClient } from 'mqtt'
import type { QoS } from '../../src/protocol/packets.js'
import { Inbox, RawMqtt, startBroker, subackCodes, type Received, type TestBroker } from '../helpers/index.js'

/** A broker that never answers must fail the test, not hang the run. */
const TEST_TIMEOUT = 10_000

/** Publishes a retained message from a client and waits for the broker to have taken it. */
async function retain(pub: MqttClient, topic: string, payload: string, qos: 1 | 2 = 1): Promise<void> {
  await pub.publishAsync(topic, payload, { qos, retain: true })
}

/**
 * A QoS 0 retained publish has no acknowledgement: follow it with a PINGREQ from the same
 * connection; once PINGRESP is back, the PUBLISH before it was handled.
 */
async function retainQos0(b: TestBroker, clientId: string, topic: string, payload: string): Promise<void> {
  const raw = await RawMqtt.open(b, clientId)
  raw.publish(topic, payload, 0, 0, { retain: true })
  raw.send({ type: 'pingreq' })
  await raw.take('pingresp')
}

/** Subscribes a new client to `filters`, then publishes a sentinel on `sentinelTopic`; returns what arrived before it. */
async function freshSubscriber(
  b: TestBroker,
  clientId: string,
  filters: Record<string, { qos: QoS }>,
  sentinelTopic: string,
): Promise<Received[]> {
  const client = await b.connect({ clientId })
  const inbox = new Inbox(client)
  const codes = await subackCodes(client, filters)
  assert.deepEqual(codes, Object.values(filters).map((f) => f.qos), 'subscriptions granted')
  // At QoS 2 so it goes through the same (PUBREL-time) delivery path as the slowest retained message.
  await b.broker.publish({ topic: sentinelTopic, payload: `sentinel-${clientId}`, qos: 2 })
  await inbox.waitFor(`sentinel-${clientId}`)
  const all = inbox.messages
  return all.slice(0, all.findIndex((m) => m.payload === `sentinel-${clientId}`))
}

describe('retained messages', () => {
  test('a new subscription receives the retained message with RETAIN set', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-5] a RETAIN=1 message is stored; [MQTT-3.3.1-6] it is sent to a new matching
    // subscription; [MQTT-3.3.1-8] with RETAIN 1
    const b = await startBroker()
    try {
      const pub = await b.connect({ clientId: 'pub' })
      await retain(pub, 'r/t', 'kept')
      const got = await freshSubscriber(b, 'sub', { 'r/t': { qos: 1 } }, 'r/t')
      assert.deepEqual(got, [{ topic: 'r/t', payload: 'kept', qos: 1, retain: true, dup: false }])
    } finally {
      await b.close()
    }
  })

  test('one retained message per topic: the second retained publish replaces the first', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-5] a new retained message replaces any existing one for the topic
    const b = await startBroker()
    try {
      const pub = await b.connect({ clientId: 'pub' })
      await retain(pub, 'r/t', 'first')
      await retain(pub, 'r/t', 'second')
      await retain(pub, 'r/other', 'other')
      const got = await freshSubscriber(b, 'sub', { 'r/t': { qos: 1 } }, 'r/t')
      assert.deepEqual(got.map((m) => [m.topic, m.payload, m.retain]), [['r/t', 'second', true]])
    } finally {
      await b.close()
    }
  })

  test('existing subscribers receive a retained publish with RETAIN clear', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-9] RETAIN is 0 when a message matches an established subscription, however it was published
    const b = await startBroker()
    try {
      const client = await b.connect({ clientId: 'sub' })
      const inbox = new Inbox(client)
      await client.subscribeAsync('r/#', { qos: 2 })
      const pub = await b.connect({ clientId: 'pub' })
      for (const qos of [1, 2] as const) await retain(pub, `r/${qos}`, `live${qos}`, qos)
      await retainQos0(b, 'pub0', 'r/0', 'live0')
      await b.broker.publish({ topic: 'r/local', payload: 'live-local', qos: 1, retain: true })
      await inbox.waitFor('live-local')
      for (const payload of ['live0', 'live1', 'live2', 'live-local']) {
        const got = await inbox.waitFor(payload)
        assert.equal(got.retain, false, `${payload} forwarded with RETAIN clear`)
      }
      // Same messages, to a new subscription: RETAIN set.
      const fresh = await freshSubscriber(b, 'fresh', { 'r/#': { qos: 2 } }, 'r/sentinel')
      assert.deepEqual(
        fresh.map((m) => [m.payload, m.retain]).sort(),
        [['live-local', true], ['live0', true], ['live1', true], ['live2', true]],
      )
    } finally {
      await b.close()
    }
  })

  test('an empty retained payload deletes the retained message and is itself forwarded', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-10] a zero-byte retained PUBLISH is processed as normal (sent to subscribers) and
    // removes the retained message; [MQTT-3.3.1-11] it is not itself stored
    const b = await startBroker()
    try {
      const client = await b.connect({ clientId: 'existing' })
      const inbox = new Inbox(client)
      await client.subscribeAsync('e/t', { qos: 1 })
      const pub = await b.connect({ clientId: 'pub' })
      await retain(pub, 'e/t', 'doomed')
      await retain(pub, 'e/t', '')
      await inbox.waitCount(2)
      assert.deepEqual(inbox.messages.map((m) => [m.payload, m.retain]), [
        ['doomed', false],
        ['', false],
      ])
      const got = await freshSubscriber(b, 'later', { 'e/t': { qos: 1 }, 'e/#': { qos: 1 } }, 'e/t')
      assert.deepEqual(got, [], 'a later subscriber gets no retained message')
    } finally {
      await b.close()
    }
  })

  test('a non-retained publish neither replaces nor removes the retained message', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-12] RETAIN 0: not stored, existing retained message not removed or replaced
    const b = await startBroker()
    try {
      const pub = await b.connect({ clientId: 'pub' })
      await retain(pub, 'n/t', 'kept')
      await pub.publishAsync('n/t', 'transient', { qos: 1, retain: false })
      await pub.publishAsync('n/t', '', { qos: 1, retain: false })
      const got = await freshSubscriber(b, 'sub', { 'n/t': { qos: 1 } }, 'n/t')
      assert.deepEqual(got.map((m) => [m.payload, m.retain]), [['kept', true]])
    } finally {
      await b.close()
    }
  })

  test('wildcard subscriptions receive every matching retained message', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-6] the last retained message on each matching topic is sent
    const b = await startBroker()
    try {
      const pub = await b.connect({ clientId: 'pub' })
      for (const topic of ['w/1', 'w/2', 'w/x/3', 'w', 'other/1']) await retain(pub, topic, topic)
      const hash = await freshSubscriber(b, 'hash', { 'w/#': { qos: 1 } }, 'w/sentinel')
      assert.deepEqual(hash.map((m) => m.topic).sort(), ['w', 'w/1', 'w/2', 'w/x/3'])
      for (const m of hash) assert.equal(m.retain, true)
      const plus = await freshSubscriber(b, 'plus', { 'w/+': { qos: 1 } }, 'w/sentinel')
      assert.deepEqual(plus.map((m) => m.topic).sort(), ['w/1', 'w/2'])
      const mid = await freshSubscriber(b, 'mid', { '+/x/+': { qos: 1 } }, 'w/x/sentinel')
      assert.deepEqual(mid.map((m) => m.topic), ['w/x/3'])
      const all = await freshSubscriber(b, 'all', { '#': { qos: 1 } }, 'all/sentinel')
      assert.deepEqual(all.map((m) => m.topic).sort(), ['other/1', 'w', 'w/1', 'w/2', 'w/x/3'])
    } finally {
      await b.close()
    }
  })

  test("retained '$' topics are not sent to filters starting with a wildcard", { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-4.7.2-1] applies to retained messages as to live ones
    const b = await startBroker()
    try {
      await b.broker.publish({ topic: '$SYS/uptime', payload: '42', qos: 1, retain: true })
      await b.broker.publish({ topic: 'plain', payload: 'p', qos: 1, retain: true })
      const wild = await freshSubscriber(b, 'wild', { '#': { qos: 1 }, '+/uptime': { qos: 1 } }, 'sentinel')
      assert.deepEqual(wild.map((m) => m.topic), ['plain'])
      const sys = await freshSubscriber(b, 'sys', { '$SYS/#': { qos: 1 } }, '$SYS/sentinel')
      assert.deepEqual(sys.map((m) => [m.topic, m.payload, m.retain]), [['$SYS/uptime', '42', true]])
    } finally {
      await b.close()
    }
  })

  test('retained messages are delivered at min(retained QoS, granted QoS)', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.8.4-6] the QoS of messages sent for a subscription is the minimum of the published
    // QoS and the granted QoS; [MQTT-3.3.1-5] the retained message is stored with its QoS
    const b = await startBroker()
    try {
      const pub = await b.connect({ clientId: 'pub' })
      await retainQos0(b, 'pub0', 'm/0', 'm0')
      await retain(pub, 'm/1', 'm1', 1)
      await retain(pub, 'm/2', 'm2', 2)
      for (const granted of [0, 1, 2] as const) {
        const got = await freshSubscriber(b, `sub${granted}`, { 'm/+': { qos: granted } }, 'm/sentinel')
        const byPayload = new Map(got.map((m) => [m.payload, m]))
        for (const published of [0, 1, 2]) {
          const m = byPayload.get(`m${published}`)
          assert.ok(m, `retained QoS ${published} sent to a QoS ${granted} subscription`)
          assert.equal(m.qos, Math.min(published, granted), `retained QoS ${published}, granted ${granted}`)
          assert.equal(m.retain, true)
        }
      }
    } finally {
      await b.close()
    }
  })

  test('retained messages from broker.publish({ retain: true }) are stored too', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-5] [MQTT-3.3.1-6] the host application's retained publish behaves like a client's
    const b = await startBroker()
    try {
      await b.broker.publish({ topic: 'host/t', payload: 'from-host', qos: 1, retain: true })
      await b.broker.publish({ topic: 'host/not', payload: 'not-retained', qos: 1 })
      const got = await freshSubscriber(b, 'sub', { 'host/+': { qos: 2 } }, 'host/sentinel')
      assert.deepEqual(got.map((m) => [m.topic, m.payload, m.qos, m.retain]), [['host/t', 'from-host', 1, true]])
      await b.broker.publish({ topic: 'host/t', payload: '', qos: 0, retain: true })
      const after = await freshSubscriber(b, 'sub2', { 'host/+': { qos: 2 } }, 'host/sentinel')
      assert.deepEqual(after, [], 'an empty retained broker.publish deletes it')
    } finally {
      await b.close()
    }
  })

  test('a QoS 0 retained message is stored and replaces a QoS 1 one', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-7] a QoS 0 retained message discards any previous one and SHOULD be stored
    const b = await startBroker()
    try {
      const pub = await b.connect({ clientId: 'pub' })
      await retain(pub, 'z/t', 'qos1', 1)
      await retainQos0(b, 'pub0', 'z/t', 'qos0')
      const got = await freshSubscriber(b, 'sub', { 'z/t': { qos: 2 } }, 'z/t')
      assert.deepEqual(got.map((m) => [m.payload, m.qos, m.retain]), [['qos0', 0, true]])
    } finally {
      await b.close()
    }
  })

  test('a raw subscriber sees RETAIN 1 on the retained PUBLISH sent after its SUBACK', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-8] RETAIN flag 1 on the wire for a message sent because of a new subscription;
    // [MQTT-3.3.1-6] sent when the subscription is established
    const b = await startBroker()
    try {
      await b.broker.publish({ topic: 'raw/t', payload: 'r', qos: 2, retain: true })
      const raw = await RawMqtt.open(b, 'raw')
      raw.send({ type: 'subscribe', packetId: 3, subscriptions: [{ topicFilter: 'raw/t', qos: 1 }] })
      const publish = await raw.takePublish('r')
      assert.equal(publish.retain, true)
      assert.equal(publish.qos, 1)
      assert.equal(publish.dup, false)
      assert.notEqual(publish.packetId, 0)
      assert.equal((await raw.take('suback')).packetId, 3)
    } finally {
      await b.close()
    }
  })
})
