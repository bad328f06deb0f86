/**
 * MQTT 5 PUBLISH over real sockets: property forwarding, PUBACK/PUBREC reason codes, inbound
 * topic aliases, message expiry, the subscriber's Maximum Packet Size, Receive Maximum in both
 * directions, PUBREL for an unknown identifier and payload format validation.
 * Normative references are to MQTT Version 5.0 (OASIS Standard, 7 March 2019).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Properties, PublishPacket } from '../../src/protocol/packets.js'
import { fence, gone, hex, leave, mockClock, rawFence, TEST_TIMEOUT, until, withV5Broker, type RawMqtt, type TestBroker } from '../helpers/index.js'

/** A v5 raw subscriber to `filter` at `qos`. */
async function rawSubscriber(b: TestBroker, clientId: string, filter: string, qos: 0 | 1 | 2 = 1, properties: Properties = {}): Promise<RawMqtt> {
  const { raw } = await b.rawConnect({ clientId, properties })
  const suback = await raw.subscribe([{ topicFilter: filter, qos }])
  assert.deepEqual(suback.reasonCodes, [qos])
  return raw
}

const ALL_PROPERTIES: Properties = {
  payloadFormatIndicator: 1,
  contentType: 'application/json; charset=utf-8',
  responseTopic: 'props/reply/42',
  correlationData: Buffer.from([0x00, 0x01, 0xfe, 0xff]),
  // Several, a repeated key, an empty key and value, non-ASCII: all in this order
  userProperties: [
    ['a', '1'],
    ['b', '2'],
    ['a', '3'],
    ['', 'empty key'],
    ['ключ', ''],
    ['a', '1'],
  ],
}

describe('MQTT 5 property forwarding', () => {
  for (const qos of [0, 1, 2] as const) {
    test(`QoS ${qos}: User Properties (in order), Content Type, Response Topic, Correlation Data and Payload Format Indicator reach a v5 subscriber unchanged`, { timeout: TEST_TIMEOUT }, async () => {
      // [MQTT-3.3.2-4] Payload Format Indicator, [MQTT-3.3.2-20] Content Type, [MQTT-3.3.2-15]
      // Response Topic, [MQTT-3.3.2-16] Correlation Data: sent unaltered to all subscribers;
      // [MQTT-3.3.2-17] all User Properties unaltered, [MQTT-3.3.2-18] in their order.
      await withV5Broker({}, async (b) => {
        const subs = [await rawSubscriber(b, 'sub-a', 'props/t', 2), await rawSubscriber(b, 'sub-b', 'props/#', 2)]
        const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
        pub.publish('props/t', '{"x":1}', qos, { packetId: 9, properties: ALL_PROPERTIES })
        for (const sub of subs) {
          const got = await sub.takePublish('{"x":1}')
          assert.equal(got.topic, 'props/t')
          assert.deepEqual(got.properties, ALL_PROPERTIES)
        }
      })
    })
  }

  test('the mqtt client sees the same properties (user properties grouped by key)', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const sub = await b.mqtt({ clientId: 'sub' })
      await sub.client.subscribeAsync('props/t', { qos: 1 })
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('props/t', 'hello', {
        qos: 1,
        properties: {
          payloadFormatIndicator: true,
          contentType: 'text/plain',
          responseTopic: 'props/reply',
          correlationData: Buffer.from('corr-1'),
          userProperties: { a: ['1', '3'], b: '2' },
        },
      })
      const got = await sub.inbox.waitFor('hello')
      const p = got.packet.properties ?? {}
      assert.equal(p.payloadFormatIndicator, true)
      assert.equal(p.contentType, 'text/plain')
      assert.equal(p.responseTopic, 'props/reply')
      assert.deepEqual(p.correlationData, Buffer.from('corr-1'))
      assert.deepEqual({ ...p.userProperties }, { a: ['1', '3'], b: '2' })
    })
  })

  test('a message without properties reaches a v5 subscriber without any', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const sub = await rawSubscriber(b, 'sub', 'bare/t')
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('bare/t', 'bare', 1, { packetId: 1 })
      const got = await sub.takePublish('bare')
      assert.deepEqual(got.properties ?? {}, {})
    })
  })

  test('properties are dropped for a 3.1.1 subscriber, which still gets the message intact', { timeout: TEST_TIMEOUT }, async () => {
    // A 3.1.1 PUBLISH has no properties field: the broker must encode the message for the
    // subscriber's protocol level, or the 3.1.1 client would read property bytes as topic/payload.
    await withV5Broker({}, async (b) => {
      const { raw: sub4 } = await b.rawConnect({ clientId: 'sub4' }, 4)
      const suback = await sub4.subscribe([{ topicFilter: 'props/t', qos: 1 }])
      assert.deepEqual(suback.reasonCodes, [1])
      const mqtt4 = await b.mqtt({ clientId: 'mqtt4', protocolVersion: 4 })
      await mqtt4.client.subscribeAsync('props/t', { qos: 1 })
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('props/t', 'payload-bytes', 1, { packetId: 1, properties: ALL_PROPERTIES })
      const got = await sub4.takePublish('payload-bytes')
      assert.equal(got.topic, 'props/t')
      assert.equal(got.qos, 1)
      assert.equal(got.properties, undefined)
      const viaMqtt = await mqtt4.inbox.waitFor('payload-bytes')
      assert.equal(viaMqtt.topic, 'props/t')
      assert.equal(viaMqtt.packet.properties, undefined)
    })
  })

  test("a 3.1.1 publisher's message reaches a v5 subscriber", { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const sub = await rawSubscriber(b, 'sub5', 'v4/t')
      const pub4 = await b.mqtt({ clientId: 'pub4', protocolVersion: 4 })
      await pub4.client.publishAsync('v4/t', 'from 3.1.1', { qos: 1 })
      const got = await sub.takePublish('from 3.1.1')
      assert.equal(got.topic, 'v4/t')
      assert.equal(got.qos, 1)
      assert.deepEqual(got.properties ?? {}, {})
    })
  })
})

describe('MQTT 5 PUBACK / PUBREC reason codes', () => {
  test('PUBACK and PUBREC say 0x10 (No matching subscribers) when nobody is subscribed, 0x00 when someone is', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.4.2.1 / 3.5.2.1: 0x10 "The message is accepted but there are no subscribers";
    // [MQTT-3.4.2-1] [MQTT-3.5.2-1] the sender uses one of those reason codes.
    await withV5Broker({}, async (b) => {
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('nobody/t', 'x', 1, { packetId: 1 })
      const lonely = await pub.take('puback')
      assert.equal(lonely.packetId, 1)
      assert.equal(hex(lonely.reasonCode), hex(0x10))
      pub.publish('nobody/t', 'x', 2, { packetId: 2 })
      const lonelyRec = await pub.take('pubrec')
      assert.equal(hex(lonelyRec.reasonCode), hex(0x10))
      // 0x10 is a success: the QoS 2 flow goes on to PUBCOMP
      pub.send({ type: 'pubrel', packetId: 2 })
      const comp = await pub.take('pubcomp')
      assert.equal(hex(comp.reasonCode ?? 0), hex(0))

      await rawSubscriber(b, 'sub', 'somebody/t', 2)
      pub.publish('somebody/t', 'x', 1, { packetId: 3 })
      const heard = await pub.take('puback')
      assert.equal(heard.packetId, 3)
      assert.equal(hex(heard.reasonCode ?? 0), hex(0))
      pub.publish('somebody/t', 'x', 2, { packetId: 4 })
      const heardRec = await pub.take('pubrec')
      assert.equal(hex(heardRec.reasonCode ?? 0), hex(0))
    })
  })

  test('authorizePublish refusing: PUBACK 0x87 / PUBREC 0x87, nothing delivered, and the QoS 2 flow ends without PUBREL', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.4.2.1 / 3.5.2.1: 0x87 Not authorized. [MQTT-4.3.3-9] after a PUBREC of 0x80 or
    // more the receiver treats a later PUBLISH with that packet identifier as a new message: the
    // identifier is not held waiting for a PUBREL that will never come.
    await withV5Broker({ authorizePublish: (_client, message) => !message.topic.startsWith('deny/') }, async (b) => {
      const sub = await b.raw()
      await sub.connect({ clientId: 'sub' })
      const suback = await sub.subscribe([
        { topicFilter: 'deny/#', qos: 2 },
        { topicFilter: 'ok/#', qos: 2 },
      ])
      assert.deepEqual(suback.reasonCodes, [2, 2])
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('deny/t', 'refused-1', 1, { packetId: 5 })
      const puback = await pub.take('puback')
      assert.equal(puback.packetId, 5)
      assert.equal(hex(puback.reasonCode), hex(0x87))
      pub.publish('deny/t', 'refused-2', 2, { packetId: 7 })
      const pubrec = await pub.take('pubrec')
      assert.equal(pubrec.packetId, 7)
      assert.equal(hex(pubrec.reasonCode), hex(0x87))
      // No PUBREL from us: the same identifier now carries a new, allowed message
      pub.publish('ok/t', 'allowed', 2, { packetId: 7 })
      const again = await pub.take('pubrec')
      assert.equal(again.packetId, 7)
      assert.equal(hex(again.reasonCode ?? 0), hex(0), 'a new message, not a duplicate of the refused one')
      const got = await sub.takePublish('allowed')
      assert.equal(got.topic, 'ok/t')
      pub.send({ type: 'pubrel', packetId: 7 })
      const comp = await pub.take('pubcomp')
      assert.equal(hex(comp.reasonCode ?? 0), hex(0))
      assert.deepEqual(
        sub.publishes().filter((p) => p.topic.startsWith('deny/')),
        [],
        'refused messages are not delivered',
      )
    })
  })

  test('the mqtt client sees a refusal as a publish error with reason code 0x87', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({ authorizePublish: () => false }, async (b) => {
      const pub = await b.mqtt({ clientId: 'pub' })
      const error = await new Promise<unknown>((resolve) => pub.client.publish('any/t', 'x', { qos: 1 }, (err) => resolve(err)))
      assert.equal((error as { code?: number } | undefined)?.code, 0x87)
    })
  })
})

describe('MQTT 5 inbound topic aliases', () => {
  test('an alias set with a topic and reused with an empty topic delivers on the right topic; a new topic re-maps it', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.3.4, on receiving a Topic Alias: a known alias with an empty topic name is
    // processed with the mapped topic; a topic name with an alias sets or updates the mapping.
    // [MQTT-3.3.2-12] the server accepts every alias from 1 to its Topic Alias Maximum.
    await withV5Broker({ limits: { topicAliasMaximum: 3 } }, async (b) => {
      const sub = await rawSubscriber(b, 'sub', 'alias/#')
      const { raw: pub, connack } = await b.rawConnect({ clientId: 'pub' })
      assert.equal(connack.properties?.topicAliasMaximum, 3)
      const send = (topic: string, payload: string, alias: number): void => pub.publish(topic, payload, 0, { properties: { topicAlias: alias } })
      send('alias/a', 'm1', 1)
      send('', 'm2', 1)
      send('alias/b', 'm3', 3)
      send('', 'm4', 3)
      send('alias/c', 'm5', 1)
      send('', 'm6', 1)
      send('', 'm7', 3)
      await until(() => sub.publishes().length >= 7, 3000, () => `7 messages; got ${sub.describe()}`)
      const got = sub.publishes().map((p) => `${p.topic}:${p.payload.toString()}`)
      assert.deepEqual(got, ['alias/a:m1', 'alias/a:m2', 'alias/b:m3', 'alias/b:m4', 'alias/c:m5', 'alias/c:m6', 'alias/b:m7'])
      // The publisher's alias belonged to its connection: it is not forwarded
      for (const p of sub.publishes()) assert.equal(p.properties?.topicAlias, undefined)
      assert.equal(pub.closed, false)
    })
  })

  test('topic alias 0 gets DISCONNECT 0x94', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.2-8] a Topic Alias of 0 is not allowed; section 3.3.4: DISCONNECT 0x94 (Topic Alias invalid)
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'zero' })
      raw.publish('alias/t', 'x', 0, { properties: { topicAlias: 0 } })
      await raw.expectDisconnect(0x94)
    })
  })

  test('a topic alias above topicAliasMaximum gets DISCONNECT 0x94, the maximum itself is fine', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.2.2-17] [MQTT-3.3.2-9] the client must not exceed the Topic Alias Maximum in CONNACK
    await withV5Broker({ limits: { topicAliasMaximum: 3 } }, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'over' })
      raw.publish('alias/t', 'ok', 1, { packetId: 1, properties: { topicAlias: 3 } })
      const puback = await raw.take('puback')
      assert.ok((puback.reasonCode ?? 0) < 0x80)
      raw.publish('alias/t', 'x', 0, { properties: { topicAlias: 4 } })
      await raw.expectDisconnect(0x94)
    })
  })

  test('with topicAliasMaximum 0 any topic alias gets DISCONNECT 0x94', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.2.2-18] no aliases when the server's Topic Alias Maximum is absent or 0
    await withV5Broker({ limits: { topicAliasMaximum: 0 } }, async (b) => {
      const { raw, connack } = await b.rawConnect({ clientId: 'none' })
      assert.equal(connack.properties?.topicAliasMaximum ?? 0, 0)
      raw.publish('alias/t', 'x', 0, { properties: { topicAlias: 1 } })
      await raw.expectDisconnect(0x94)
    })
  })

  test('an empty topic with an alias never set gets DISCONNECT 0x82', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.3.4: no mapping for the alias and a zero-length topic name is a Protocol Error (0x82)
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'unknown' })
      raw.publish('alias/t', 'x', 0, { properties: { topicAlias: 1 } })
      raw.publish('', 'y', 0, { properties: { topicAlias: 2 } })
      await raw.expectDisconnect(0x82)
    })
  })

  test('aliases do not carry over to a new connection', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.2-7] a receiver must not carry Topic Alias mappings from one connection to another
    await withV5Broker({}, async (b) => {
      const { raw: first } = await b.rawConnect({ clientId: 'forgetful', cleanSession: false, properties: { sessionExpiryInterval: 60 } })
      first.publish('alias/t', 'x', 1, { packetId: 1, properties: { topicAlias: 1 } })
      await first.take('puback')
      const left = gone(b, 'forgetful')
      first.send({ type: 'disconnect', reasonCode: 0 })
      await left
      const { raw: second, connack } = await b.rawConnect({ clientId: 'forgetful', cleanSession: false, properties: { sessionExpiryInterval: 60 } })
      assert.equal(connack.sessionPresent, true)
      second.publish('', 'y', 0, { properties: { topicAlias: 1 } })
      await second.expectDisconnect(0x82)
    })
  })
})

// The broker's clock is mocked in the tests that wait for a message to age.
describe('MQTT 5 Message Expiry Interval', () => {
  test('the Message Expiry Interval is forwarded to an online subscriber', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.2-6] the forwarded value is the received one minus the time spent in the server
    await withV5Broker({}, async (b) => {
      const sub = await rawSubscriber(b, 'sub', 'exp/t')
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('exp/t', 'fresh', 1, { packetId: 1, properties: { messageExpiryInterval: 60 } })
      const got = await sub.takePublish('fresh')
      const expiry = got.properties?.messageExpiryInterval
      assert.ok(expiry === 60 || expiry === 59, `Message Expiry Interval ${expiry}`)
    })
  })

  test('a message queued for an offline session is forwarded with its expiry reduced by the time it waited', { timeout: TEST_TIMEOUT }, async (t) => {
    // [MQTT-3.3.2-6]
    const clock = mockClock(t)
    await withV5Broker({}, async (b) => {
      const opts = { clientId: 'sleeper', clean: false, properties: { sessionExpiryInterval: 60 } }
      const first = await b.mqtt(opts)
      await first.client.subscribeAsync('exp/t', { qos: 1 })
      await leave(b, first.client)
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('exp/t', 'waited', { qos: 1, properties: { messageExpiryInterval: 60 } })
      clock.tick(2100)
      const again = await b.mqtt(opts)
      assert.equal(again.connack.sessionPresent, true)
      const got = await again.inbox.waitFor('waited')
      const expiry = got.packet.properties?.messageExpiryInterval
      assert.ok(expiry !== undefined, 'the expiry is still sent')
      assert.ok(expiry <= 59, `reduced by at least 1 s after ~2 s queued: got ${expiry}`)
      assert.ok(expiry >= 55, `not reduced by more than the time it waited: got ${expiry}`)
    })
  })

  test('an expired queued message is not delivered; a later one without expiry is', { timeout: TEST_TIMEOUT }, async (t) => {
    // [MQTT-3.3.2-5] once the interval has passed and onward delivery has not started, the
    // server deletes the copy of the message for that subscriber
    const clock = mockClock(t)
    await withV5Broker({}, async (b) => {
      const opts = { clientId: 'sleeper', clean: false, properties: { sessionExpiryInterval: 60 } }
      const first = await b.mqtt(opts)
      await first.client.subscribeAsync('exp/t', { qos: 1 })
      await leave(b, first.client)
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('exp/t', 'short-lived', { qos: 1, properties: { messageExpiryInterval: 1 } })
      await pub.client.publishAsync('exp/t', 'forever', { qos: 1 })
      clock.tick(1600)
      const again = await b.mqtt(opts)
      assert.equal(again.connack.sessionPresent, true)
      // Queued in order: once 'forever' is here, 'short-lived' would have come first
      await again.inbox.waitFor('forever')
      assert.deepEqual(again.inbox.withPayload('short-lived'), [], 'the expired message was delivered')
      assert.equal(again.inbox.withPayload('forever')[0]?.packet.properties?.messageExpiryInterval, undefined)
    })
  })

  test('a retained message expires: not sent to a later subscriber once its interval has passed, sent with a reduced interval before', { timeout: TEST_TIMEOUT }, async (t) => {
    // [MQTT-3.3.2-5] [MQTT-3.3.2-6] apply to retained messages too (section 3.3.2.3.3)
    const clock = mockClock(t)
    await withV5Broker({}, async (b) => {
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('exp/retained/short', 'short', { qos: 1, retain: true, properties: { messageExpiryInterval: 1 } })
      await pub.client.publishAsync('exp/retained/long', 'long', { qos: 1, retain: true, properties: { messageExpiryInterval: 60 } })
      clock.tick(1600)
      const sub = await b.mqtt({ clientId: 'late' })
      await sub.client.subscribeAsync('exp/retained/#', { qos: 1 })
      const long = await sub.inbox.waitFor('long')
      assert.equal(long.packet.retain, true)
      const expiry = long.packet.properties?.messageExpiryInterval
      assert.ok(expiry !== undefined && expiry <= 59 && expiry >= 55, `reduced expiry, got ${expiry}`)
      await sub.client.subscribeAsync('exp/fence', { qos: 1 })
      await fence(b, 'exp/fence', sub.inbox)
      assert.deepEqual(sub.inbox.withPayload('short'), [], 'the expired retained message was sent')
    })
  })
})

describe("MQTT 5 the subscriber's Maximum Packet Size", () => {
  test('a message larger than the subscriber accepts is not sent to it; smaller ones before and after are, and QoS 1 flow goes on', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.1.2-24] the server must not send packets exceeding the client's Maximum Packet Size;
    // [MQTT-3.1.2-25] it discards such a packet and behaves as if it had completed sending it
    // (so with Receive Maximum 1 the dropped QoS 1 message must not hold the only slot).
    await withV5Broker({}, async (b) => {
      const small = await rawSubscriber(b, 'small', 'size/t', 1, { maximumPacketSize: 128, receiveMaximum: 1 })
      const big = await rawSubscriber(b, 'big', 'size/t', 1)
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      const large = 'L'.repeat(300)
      pub.publish('size/t', 'before', 0)
      pub.publish('size/t', large, 0)
      pub.publish('size/t', 'after-0', 0)
      pub.publish('size/t', large, 1, { packetId: 1 })
      pub.publish('size/t', 'after-1', 1, { packetId: 2 })
      const after1 = await small.takePublish('after-1')
      small.send({ type: 'puback', packetId: after1.packetId })
      assert.deepEqual(
        small.publishes().map((p) => p.payload.toString()),
        ['before', 'after-0', 'after-1'],
      )
      // The subscriber without a limit gets everything
      await until(() => big.publishes().length === 5, 3000, () => `5 messages for 'big'; got ${big.describe()}`)
    })
  })
})

describe('MQTT 5 Receive Maximum', () => {
  test("the client's Receive Maximum 2: only 2 unacknowledged QoS 1 messages are sent until it acks", { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.4-9] the server must not send more than the client's Receive Maximum QoS 1/2
    // PUBLISHes without PUBACK/PUBCOMP; [MQTT-4.9.0-2] it stops at a send quota of 0.
    await withV5Broker({}, async (b) => {
      const sub = await rawSubscriber(b, 'slow', 'rm/t', 1, { receiveMaximum: 2 })
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      for (let i = 1; i <= 5; i++) pub.publish('rm/t', `m${i}`, 1, { packetId: i })
      await until(() => sub.publishes().length >= 2, 3000, 'two messages')
      // All five routed (PUBACKed), then the fence: whatever the broker sent 'slow' has arrived.
      await pub.until(() => pub.all.filter((p) => p.type === 'puback').length === 5, undefined, 'five PUBACKs')
      await sub.ping()
      assert.deepEqual(sub.publishes().map((p) => p.payload.toString()), ['m1', 'm2'])
      // One ack, one more message
      sub.send({ type: 'puback', packetId: (sub.publishes()[0] as PublishPacket).packetId })
      await until(() => sub.publishes().length >= 3, 3000, 'a third message')
      await sub.ping() // the broker has handled the PUBACK, and sent all it would on it
      assert.equal(sub.publishes().length, 3)
      // Ack everything as it comes: the rest follow, in order
      const acked = new Set([(sub.publishes()[0] as PublishPacket).packetId])
      await until(
        () => {
          for (const p of sub.publishes()) {
            if (!acked.has(p.packetId)) {
              acked.add(p.packetId)
              sub.send({ type: 'puback', packetId: p.packetId })
            }
          }
          return sub.publishes().length >= 5
        },
        3000,
        'all five messages',
      )
      assert.deepEqual(sub.publishes().map((p) => p.payload.toString()), ['m1', 'm2', 'm3', 'm4', 'm5'])
    })
  })

  test("the client's Receive Maximum 1 at QoS 2: the slot is freed by PUBCOMP, not by PUBREC", { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.4-9] for QoS 2 the quota comes back with PUBCOMP (section 4.9)
    await withV5Broker({}, async (b) => {
      const sub = await rawSubscriber(b, 'slow', 'rm/t', 2, { receiveMaximum: 1 })
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('rm/t', 'q1', 2, { packetId: 1 })
      pub.publish('rm/t', 'q2', 2, { packetId: 2 })
      const first = await sub.takePublish('q1')
      sub.send({ type: 'pubrec', packetId: first.packetId })
      const rel = await sub.take('pubrel')
      assert.equal(rel.packetId, first.packetId)
      // Both routed (PUBRECed), and the fence: the broker has handled our PUBREC and sent what it would on it.
      await pub.until(() => pub.all.filter((p) => p.type === 'pubrec').length === 2, undefined, 'two PUBRECs')
      await sub.ping()
      assert.equal(sub.publishes().length, 1, 'the second message waited for PUBCOMP')
      sub.send({ type: 'pubcomp', packetId: first.packetId })
      await sub.takePublish('q2')
    })
  })

  test('our Receive Maximum (limits.receiveMaximum 2): a third unreleased QoS 2 PUBLISH gets DISCONNECT 0x93', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.2.2.3.3: more unacknowledged QoS 1/2 PUBLISHes than the server's Receive Maximum
    // is answered with DISCONNECT 0x93 (Receive Maximum exceeded); [MQTT-3.3.4-7].
    await withV5Broker({ limits: { receiveMaximum: 2 } }, async (b) => {
      const { raw, connack } = await b.rawConnect({ clientId: 'greedy' })
      assert.equal(connack.properties?.receiveMaximum, 2)
      raw.publish('rm/in', 'a', 2, { packetId: 1 })
      raw.publish('rm/in', 'b', 2, { packetId: 2 })
      assert.equal((await raw.take('pubrec')).packetId, 1)
      assert.equal((await raw.take('pubrec')).packetId, 2)
      // Releasing one frees a slot
      raw.send({ type: 'pubrel', packetId: 1 })
      await raw.take('pubcomp')
      raw.publish('rm/in', 'c', 2, { packetId: 3 })
      assert.equal((await raw.take('pubrec')).packetId, 3)
      // Two unreleased (2 and 3): one more is over the maximum
      raw.publish('rm/in', 'd', 2, { packetId: 4 })
      await raw.expectDisconnect(0x93)
      assert.equal(raw.all.some((p) => p.type === 'pubrec' && p.packetId === 4), false)
    })
  })

  test('PUBREL for an unknown packet identifier gets PUBCOMP 0x92', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.7.2.1: 0x92 Packet Identifier not found; [MQTT-3.7.2-1] [MQTT-4.3.3-11]
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'lost' })
      raw.send({ type: 'pubrel', packetId: 321 })
      const comp = await raw.take('pubcomp')
      assert.equal(comp.packetId, 321)
      assert.equal(hex(comp.reasonCode), hex(0x92))
      assert.equal(raw.closed, false)
    })
  })
})

describe('MQTT 5 Maximum Packet Size of the broker', () => {
  test('a packet larger than limits.maxPacketSize gets DISCONNECT 0x95', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.2.2-15] the client must not exceed the Maximum Packet Size in CONNACK; section
    // 3.2.2.3.6: a larger packet is answered with DISCONNECT 0x95 (Packet too large).
    await withV5Broker({ limits: { maxPacketSize: 256 } }, async (b) => {
      const { raw, connack } = await b.rawConnect({ clientId: 'large' })
      assert.equal(connack.properties?.maximumPacketSize, 256)
      raw.publish('size/in', 'x'.repeat(100), 0)
      raw.publish('size/in', 'x'.repeat(400), 0)
      await raw.expectDisconnect(0x95)
    })
  })
})

describe('MQTT 5 Payload Format Indicator validation', () => {
  const INVALID_UTF8 = Buffer.from([0x68, 0x69, 0xff, 0xfe])

  test('capabilities.validatePayloadFormat: indicator 1 with invalid UTF-8 at QoS 1 gets PUBACK 0x99 and is not delivered', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.3.2.3.2: a receiver may check the payload format and answer PUBACK/PUBREC 0x99
    // (Payload format invalid); section 3.4.2.1.
    await withV5Broker({ capabilities: { validatePayloadFormat: true } }, async (b) => {
      const sub = await rawSubscriber(b, 'sub', 'pfi/t', 2)
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('pfi/t', INVALID_UTF8, 1, { packetId: 1, properties: { payloadFormatIndicator: 1 } })
      const puback = await pub.take('puback')
      assert.equal(hex(puback.reasonCode), hex(0x99))
      pub.publish('pfi/t', INVALID_UTF8, 2, { packetId: 2, properties: { payloadFormatIndicator: 1 } })
      const pubrec = await pub.take('pubrec')
      assert.equal(hex(pubrec.reasonCode), hex(0x99))
      // Valid UTF-8 with the indicator, and any bytes without it, go through
      pub.publish('pfi/t', 'héllo', 1, { packetId: 3, properties: { payloadFormatIndicator: 1 } })
      assert.equal(hex((await pub.take('puback')).reasonCode ?? 0), hex(0))
      pub.publish('pfi/t', INVALID_UTF8, 1, { packetId: 4, properties: { payloadFormatIndicator: 0 } })
      assert.equal(hex((await pub.take('puback')).reasonCode ?? 0), hex(0))
      await rawFence(b, 'pfi/t', sub)
      const delivered = sub.publishes().map((p) => [p.payload.toString('hex'), p.properties?.payloadFormatIndicator])
      assert.deepEqual(delivered, [
        [Buffer.from('héllo').toString('hex'), 1],
        [INVALID_UTF8.toString('hex'), 0],
        [Buffer.from('fence').toString('hex'), undefined],
      ])
    })
  })

  test('capabilities.validatePayloadFormat: invalid UTF-8 claimed at QoS 0 gets DISCONNECT 0x99', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({ capabilities: { validatePayloadFormat: true } }, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'pub' })
      raw.publish('pfi/t', INVALID_UTF8, 0, { properties: { payloadFormatIndicator: 1 } })
      await raw.expectDisconnect(0x99)
    })
  })

  test('by default the payload is not checked: invalid UTF-8 with indicator 1 is forwarded', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const sub = await rawSubscriber(b, 'sub', 'pfi/t')
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('pfi/t', INVALID_UTF8, 1, { packetId: 1, properties: { payloadFormatIndicator: 1 } })
      assert.equal(hex((await pub.take('puback')).reasonCode ?? 0), hex(0))
      await until(() => sub.publishes().length === 1)
      assert.deepEqual(sub.publishes()[0]?.payload, INVALID_UTF8)
    })
  })
})
