/**
 * MQTT 5 SUBSCRIBE / UNSUBSCRIBE over real sockets: SUBACK reason codes, No Local, Retain As
 * Published, Retain Handling, subscription identifiers and UNSUBACK reason codes.
 * Normative references are to MQTT Version 5.0 (OASIS Standard, 7 March 2019).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { AuthorizeSubscribeHook } from '../../src/hooks/types.js'
import type { QoS } from '../../src/protocol/packets.js'
import { fence, hex, leave, rawFence, TEST_TIMEOUT, until, withV5Broker, type TestBroker } from '../helpers/index.js'

/** Refuses 'test/nosubscribe' (false), and answers SUBACK codes for two more filters as a JavaScript host might. */
const authorizeSubscribe: AuthorizeSubscribeHook = (_client, subscription) => {
  if (subscription.topicFilter === 'test/nosubscribe') return false
  if (subscription.topicFilter === 'test/unspecified') return 0x80 as unknown as QoS
  if (subscription.topicFilter === 'test/quota') return 0x97 as unknown as QoS
  return true
}

describe('MQTT 5 SUBACK reason codes', () => {
  test('invalid filter 0x8F, refused by authorizeSubscribe (false) 0x80, $share without shared subscriptions 0x9E; valid filters granted, in order', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.8.4-6] a reason code per filter, [MQTT-3.9.3-1] in order, [MQTT-3.9.3-2] from table
    // 3-8: 0x8F Topic Filter invalid, 0x80 Unspecified error, 0x9E Shared Subscriptions not supported.
    await withV5Broker({ authorizeSubscribe, capabilities: { sharedSubscriptionAvailable: false } }, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'codes' })
      const suback = await raw.subscribe(
        [
          { topicFilter: 'a/#/b', qos: 1 },
          { topicFilter: 'ok/+', qos: 1 },
          { topicFilter: 'test/nosubscribe', qos: 1 },
          { topicFilter: '$share/g/t', qos: 1 },
          { topicFilter: 'a+/b', qos: 0 },
          { topicFilter: 'ok/#', qos: 2 },
        ],
        undefined,
        42,
      )
      assert.equal(suback.packetId, 42)
      assert.deepEqual(suback.reasonCodes.map(hex), [0x8f, 0x01, 0x80, 0x9e, 0x8f, 0x02].map(hex))
      // The granted ones are in place, the refused ones are not
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('test/nosubscribe', 'secret', 0)
      pub.publish('t', 'shared', 0)
      pub.publish('ok/x', 'granted', 1, { packetId: 1 })
      const got = await raw.takePublish('granted')
      assert.equal(got.qos, 1)
      assert.deepEqual(raw.publishes().map((p) => p.payload.toString()), ['granted'])
    })
  })

  test('authorizeSubscribe may answer a SUBACK reason code: 0x80 and 0x97 reach a v5 client as such', { timeout: TEST_TIMEOUT }, async () => {
    // Issue 3: "authorizeSubscribe may return a SUBACK reason code"; table 3-8 has 0x80 and 0x97.
    await withV5Broker({ authorizeSubscribe }, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'codes' })
      const suback = await raw.subscribe([
        { topicFilter: 'test/unspecified', qos: 1 },
        { topicFilter: 'test/quota', qos: 1 },
      ])
      assert.deepEqual(suback.reasonCodes.map(hex), [0x80, 0x97].map(hex))
    })
  })

  test('a 3.1.1 client gets 0x80 for each of those refusals', { timeout: TEST_TIMEOUT }, async () => {
    // MQTT 3.1.1 [MQTT-3.9.3-2]: 0x80 is its only failure code
    await withV5Broker({ authorizeSubscribe, capabilities: { sharedSubscriptionAvailable: false, wildcardSubscriptionAvailable: false } }, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'old' }, 4)
      const suback = await raw.subscribe([
        { topicFilter: 'a/#/b', qos: 1 },
        { topicFilter: 'test/nosubscribe', qos: 1 },
        { topicFilter: '$share/g/t', qos: 1 },
        { topicFilter: '+/x', qos: 1 },
        { topicFilter: 'test/quota', qos: 1 },
        { topicFilter: 'plain', qos: 1 },
      ])
      assert.deepEqual(suback.reasonCodes.map(hex), [0x80, 0x80, 0x80, 0x80, 0x80, 0x01].map(hex))
    })
  })

  test('capabilities.wildcardSubscriptionAvailable false: a wildcard filter gets 0xA2, a plain one is granted', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.2.2.3.11 Wildcard Subscription Available 0; table 3-8: 0xA2 Wildcard Subscriptions not supported
    await withV5Broker({ capabilities: { wildcardSubscriptionAvailable: false } }, async (b) => {
      const { raw, connack } = await b.rawConnect({ clientId: 'wild' })
      assert.equal(connack.properties?.wildcardSubscriptionAvailable, 0)
      const suback = await raw.subscribe([
        { topicFilter: '+/x', qos: 1 },
        { topicFilter: 'x/#', qos: 1 },
        { topicFilter: 'plain/x', qos: 1 },
      ])
      assert.deepEqual(suback.reasonCodes.map(hex), [0xa2, 0xa2, 0x01].map(hex))
    })
  })

  test('capabilities.subscriptionIdentifiersAvailable false: a SUBSCRIBE with an identifier gets DISCONNECT 0xA1', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.2.2.3.12: a SUBSCRIBE with a Subscription Identifier when they are not supported
    // is a Protocol Error, DISCONNECT 0xA1 (Subscription Identifiers not supported).
    await withV5Broker({ capabilities: { subscriptionIdentifiersAvailable: false } }, async (b) => {
      const { raw, connack } = await b.rawConnect({ clientId: 'ids' })
      assert.equal(connack.properties?.subscriptionIdentifiersAvailable, 0)
      raw.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'ids/t', qos: 0 }], properties: { subscriptionIdentifier: [5] } })
      await raw.expectDisconnect(0xa1)
    })
  })
})

describe('MQTT 5 No Local', () => {
  test("a client's own publish is not delivered to it on a No Local subscription, but is to another client", { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.8.3-3] No Local 1: not forwarded to a connection with the publisher's ClientID
    await withV5Broker({}, async (b) => {
      const a = await b.mqtt({ clientId: 'a' })
      const other = await b.mqtt({ clientId: 'other' })
      await a.client.subscribeAsync('nl/t', { qos: 1, nl: true })
      await other.client.subscribeAsync('nl/t', { qos: 1, nl: true })
      await a.client.publishAsync('nl/t', 'from-a', { qos: 1 })
      await other.inbox.waitFor('from-a')
      // The subscription works for other publishers; their message comes after ours would have
      await other.client.publishAsync('nl/t', 'from-other', { qos: 1 })
      await a.inbox.waitFor('from-other')
      assert.deepEqual(a.inbox.withPayload('from-a'), [], 'own message delivered despite No Local')
      assert.deepEqual(other.inbox.withPayload('from-other'), [], 'own message delivered despite No Local')
    })
  })

  test('No Local is per subscription: an overlapping subscription without it still delivers the own message, once', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const a = await b.mqtt({ clientId: 'a' })
      await a.client.subscribeAsync('nl/t', { qos: 1, nl: true })
      await a.client.subscribeAsync('nl/#', { qos: 1 })
      await a.client.publishAsync('nl/t', 'mine', { qos: 1 })
      await a.inbox.waitFor('mine')
      await fence(b, 'nl/t', a.inbox)
      assert.equal(a.inbox.withPayload('mine').length, 1)
    })
  })

  test('without No Local a client receives its own publish', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const a = await b.mqtt({ clientId: 'a' })
      await a.client.subscribeAsync('nl/t', { qos: 1 })
      await a.client.publishAsync('nl/t', 'echo', { qos: 1 })
      await a.inbox.waitFor('echo')
    })
  })
})

describe('MQTT 5 Retain As Published', () => {
  test('RETAIN 1 is kept on forwarded messages with Retain As Published, cleared without it', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-12] Retain As Published 0: RETAIN set to 0 when forwarding; [MQTT-3.3.1-13]
    // Retain As Published 1: RETAIN as in the received PUBLISH.
    await withV5Broker({}, async (b) => {
      const rap = await b.mqtt({ clientId: 'rap' })
      const plain = await b.mqtt({ clientId: 'plain' })
      await rap.client.subscribeAsync('rap/t', { qos: 1, rap: true })
      await plain.client.subscribeAsync('rap/t', { qos: 1 })
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('rap/t', 'retained', { qos: 1, retain: true })
      await pub.client.publishAsync('rap/t', 'not-retained', { qos: 1, retain: false })
      assert.equal((await rap.inbox.waitFor('retained')).packet.retain, true)
      assert.equal((await rap.inbox.waitFor('not-retained')).packet.retain, false)
      assert.equal((await plain.inbox.waitFor('retained')).packet.retain, false)
      assert.equal((await plain.inbox.waitFor('not-retained')).packet.retain, false)
      // QoS 0 too (a separately cached encoding)
      await pub.client.publishAsync('rap/t', 'retained-0', { qos: 0, retain: true })
      assert.equal((await rap.inbox.waitFor('retained-0')).packet.retain, true)
      assert.equal((await plain.inbox.waitFor('retained-0')).packet.retain, false)
    })
  })

  test('a 3.1.1 subscriber gets RETAIN 0 on forwarded messages', { timeout: TEST_TIMEOUT }, async () => {
    // MQTT 3.1.1 [MQTT-3.3.1-9]
    await withV5Broker({}, async (b) => {
      const old = await b.mqtt({ clientId: 'old', protocolVersion: 4 })
      await old.client.subscribeAsync('rap/t', { qos: 1 })
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('rap/t', 'retained', { qos: 1, retain: true })
      assert.equal((await old.inbox.waitFor('retained')).packet.retain, false)
    })
  })
})

describe('MQTT 5 Retain Handling', () => {
  async function withRetained(body: (b: TestBroker) => Promise<void>): Promise<void> {
    await withV5Broker({}, async (b) => {
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('rh/t', 'kept', { qos: 1, retain: true })
      await body(b)
    })
  }

  test('Retain Handling 0: retained messages are sent on every subscribe, re-subscribe included', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-9]; [MQTT-3.8.4-4] with Retain Handling 0 they are re-sent on a replacing subscription
    await withRetained(async (b) => {
      const c = await b.mqtt({ clientId: 'rh0' })
      await c.client.subscribeAsync('rh/t', { qos: 1, rh: 0 })
      const first = await c.inbox.waitFor('kept')
      assert.equal(first.packet.retain, true)
      await c.client.subscribeAsync('rh/t', { qos: 1, rh: 0 })
      await until(() => c.inbox.withPayload('kept').length === 2, 3000, 'the retained message again')
    })
  })

  test('Retain Handling 1: retained messages are sent for a new subscription but not when it is re-subscribed', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-10] only if the subscription did not already exist
    await withRetained(async (b) => {
      const c = await b.mqtt({ clientId: 'rh1' })
      await c.client.subscribeAsync('rh/t', { qos: 1, rh: 1 })
      assert.equal((await c.inbox.waitFor('kept')).packet.retain, true)
      await c.client.subscribeAsync('rh/t', { qos: 1, rh: 1 })
      await fence(b, 'rh/t', c.inbox)
      assert.equal(c.inbox.withPayload('kept').length, 1, 'retained message re-sent on re-subscribe')
      // After an unsubscribe the subscription is new again
      await c.client.unsubscribeAsync('rh/t')
      await c.client.subscribeAsync('rh/t', { qos: 1, rh: 1 })
      await until(() => c.inbox.withPayload('kept').length === 2, 3000, 'the retained message for the new subscription')
    })
  })

  test('Retain Handling 2: retained messages are never sent on subscribe', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.1-11]
    await withRetained(async (b) => {
      const c = await b.mqtt({ clientId: 'rh2' })
      await c.client.subscribeAsync('rh/t', { qos: 1, rh: 2 })
      await c.client.subscribeAsync('rh/t', { qos: 1, rh: 2 })
      await fence(b, 'rh/t', c.inbox)
      assert.deepEqual(c.inbox.withPayload('kept'), [])
      // Live messages still flow on that subscription
      assert.equal(c.inbox.withPayload('fence').length, 1)
    })
  })
})

describe('MQTT 5 subscription identifiers', () => {
  test('a message matching two subscriptions with identifiers 1 and 268435455 arrives once carrying both', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.4-3] the identifiers of the matching subscriptions are sent with the message;
    // [MQTT-3.3.4-4] a single copy carries all of them (order not significant).
    // 268,435,455 is the largest identifier (section 3.8.2.1.2), a 4-byte variable integer.
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'ids' })
      assert.deepEqual((await raw.subscribe([{ topicFilter: 'si/+', qos: 1 }], { subscriptionIdentifier: [1] }, 1)).reasonCodes, [1])
      assert.deepEqual((await raw.subscribe([{ topicFilter: 'si/#', qos: 1 }], { subscriptionIdentifier: [268_435_455] }, 2)).reasonCodes, [1])
      assert.deepEqual((await raw.subscribe([{ topicFilter: 'si/plain/+', qos: 0 }], undefined, 3)).reasonCodes, [0])
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('si/x', 'both', 1, { packetId: 1 })
      pub.publish('si/a/b', 'deep', 1, { packetId: 2 })
      pub.publish('si/plain/x', 'two-of-three', 1, { packetId: 3 })
      await rawFence(b, 'si/fence/x', raw)
      const publishes = raw.publishes()
      const both = publishes.filter((p) => p.payload.toString() === 'both')
      assert.equal(both.length, 1, 'one copy for overlapping subscriptions')
      assert.deepEqual([...(both[0]?.properties?.subscriptionIdentifier ?? [])].sort((x, y) => x - y), [1, 268_435_455])
      const deep = publishes.find((p) => p.payload.toString() === 'deep')
      assert.deepEqual(deep?.properties?.subscriptionIdentifier, [268_435_455])
      // 'si/plain/x' matches 'si/#' (id) and 'si/plain/+' (no id): only the one identifier
      const mixed = publishes.filter((p) => p.payload.toString() === 'two-of-three')
      assert.equal(mixed.length, 1)
      assert.deepEqual(mixed[0]?.properties?.subscriptionIdentifier, [268_435_455])
      // Each packet carries only its own identifiers: the fence matched si/# alone
      const fenced = publishes.find((p) => p.payload.toString() === 'fence')
      assert.deepEqual(fenced?.properties?.subscriptionIdentifier, [268_435_455])
    })
  })

  test('a subscription without an identifier delivers without one; re-subscribing replaces the identifier', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.8.4-3] a SUBSCRIBE to an existing filter replaces the subscription, identifier included
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'ids' })
      await raw.subscribe([{ topicFilter: 'si/t', qos: 1 }], undefined, 1)
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('si/t', 'no-id', 0)
      assert.equal((await raw.takePublish('no-id')).properties?.subscriptionIdentifier, undefined)
      await raw.subscribe([{ topicFilter: 'si/t', qos: 1 }], { subscriptionIdentifier: [9] }, 2)
      pub.publish('si/t', 'id-9', 0)
      assert.deepEqual((await raw.takePublish('id-9')).properties?.subscriptionIdentifier, [9])
      await raw.subscribe([{ topicFilter: 'si/t', qos: 1 }], { subscriptionIdentifier: [10] }, 3)
      pub.publish('si/t', 'id-10', 0)
      assert.deepEqual((await raw.takePublish('id-10')).properties?.subscriptionIdentifier, [10])
    })
  })

  test('retained messages sent on subscribe carry the subscription identifier', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.4-3]: a retained message sent for a new subscription is published as its result
    await withV5Broker({}, async (b) => {
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('si/r', 'retained', { qos: 1, retain: true })
      const { raw } = await b.rawConnect({ clientId: 'ids' })
      const suback = await raw.subscribe([{ topicFilter: 'si/+', qos: 1 }], { subscriptionIdentifier: [7] })
      assert.deepEqual(suback.reasonCodes, [1])
      const got = await raw.takePublish('retained')
      assert.equal(got.retain, true)
      assert.deepEqual(got.properties?.subscriptionIdentifier, [7])
    })
  })

  test('a message queued for an offline session keeps the subscription identifiers', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.4-3] holds for messages delivered when the session resumes, too
    await withV5Broker({}, async (b) => {
      const opts = { clientId: 'ids', clean: false, properties: { sessionExpiryInterval: 60 } }
      const first = await b.mqtt(opts)
      await first.client.subscribeAsync('si/+', { qos: 1, properties: { subscriptionIdentifier: 11 } })
      await first.client.subscribeAsync('si/#', { qos: 1, properties: { subscriptionIdentifier: 12 } })
      await leave(b, first.client)
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('si/x', 'queued', { qos: 1 })
      const again = await b.mqtt(opts)
      assert.equal(again.connack.sessionPresent, true)
      const got = await again.inbox.waitFor('queued')
      assert.deepEqual([got.packet.properties?.subscriptionIdentifier].flat().sort(), [11, 12])
    })
  })

  test('the mqtt client sees the identifiers of the matching subscriptions', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const c = await b.mqtt({ clientId: 'ids' })
      await c.client.subscribeAsync('si/+', { qos: 1, properties: { subscriptionIdentifier: 3 } })
      await c.client.subscribeAsync('si/#', { qos: 1, properties: { subscriptionIdentifier: 4 } })
      const pub = await b.mqtt({ clientId: 'pub' })
      await pub.client.publishAsync('si/x', 'hello', { qos: 1 })
      const got = await c.inbox.waitFor('hello')
      const ids = got.packet.properties?.subscriptionIdentifier
      assert.deepEqual([ids].flat().sort(), [3, 4])
    })
  })
})

describe('MQTT 5 UNSUBACK reason codes', () => {
  test('UNSUBACK says 0x00 for a removed subscription and 0x11 for one that did not exist, in order', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.11.3-1] one code per filter in order, [MQTT-3.11.3-2] from table 3-9: 0x00 Success,
    // 0x11 No subscription existed; [MQTT-3.10.4-1] the matching subscription is deleted.
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'unsub' })
      await raw.subscribe([
        { topicFilter: 'u/a', qos: 1 },
        { topicFilter: 'u/fence', qos: 1 },
      ])
      raw.send({ type: 'unsubscribe', packetId: 5, topicFilters: ['u/b', 'u/a', 'u/+'] })
      const unsuback = await raw.take('unsuback')
      assert.equal(unsuback.packetId, 5)
      assert.deepEqual((unsuback.reasonCodes ?? []).map(hex), [0x11, 0x00, 0x11].map(hex))
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('u/a', 'gone', 1, { packetId: 1 })
      await pub.take('puback')
      await rawFence(b, 'u/fence', raw)
      assert.deepEqual(raw.publishes().map((p) => p.payload.toString()), ['fence'])
      raw.send({ type: 'unsubscribe', packetId: 6, topicFilters: ['u/a'] })
      assert.deepEqual(((await raw.take('unsuback')).reasonCodes ?? []).map(hex), [0x11].map(hex))
    })
  })
})
