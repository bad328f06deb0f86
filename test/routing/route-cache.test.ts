/**
 * The router remembers what each topic matched, so a topic published again skips the trie walk.
 * These tests publish on the same topic again and again around the changes the memory must
 * follow: a new subscription, an unsubscription, the message's own QoS and RETAIN, and No Local
 * (whose result depends on the publisher, so it must never be remembered for another one).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { RawMqtt } from '../helpers/index.js'
import { startBroker } from '../helpers/index.js'

const payloads = (raw: RawMqtt): string[] => raw.publishes().map((p) => p.payload.toString())

describe('route memory', () => {
  it('follows subscriptions made and removed between publishes on one topic, and each message\'s QoS', async () => {
    const b = await startBroker()
    try {
      const { raw: a } = await b.rawConnect({ clientId: 'rc-a', cleanSession: true, keepAlive: 0 })
      await a.subscribe('c/t', 1)
      const { raw: pub } = await b.rawConnect({ clientId: 'rc-pub', cleanSession: true, keepAlive: 0 })

      pub.publish('c/t', 'one', 0)
      pub.publish('c/t', 'two', 1, 1)
      await pub.next('puback')
      await a.until(() => a.publishes().length === 2)
      // [MQTT-3.8.4-6] the lower of the subscription's and the message's QoS, per message.
      assert.deepEqual(a.publishes().map((p) => [p.payload.toString(), p.qos]), [['one', 0], ['two', 1]])

      // `a` also listens on a fence topic: once a later fence arrives, a message before it would have.
      await a.subscribe([{ topicFilter: 'fence/a', qos: 0 }], undefined, 2)
      // A new matching subscription after the topic was routed: the next message reaches it.
      const { raw: c } = await b.rawConnect({ clientId: 'rc-c', cleanSession: true, keepAlive: 0 })
      await c.subscribe('c/+', 0)
      pub.publish('c/t', 'three', 0)
      await c.until(() => payloads(c).includes('three'))
      await a.until(() => payloads(a).includes('three'))

      // A removed subscription (after 'three' was routed to it): the next message no longer reaches it.
      a.send({ type: 'unsubscribe', packetId: 3, topicFilters: ['c/t'] })
      await a.take('unsuback')
      pub.publish('c/t', 'four', 0)
      pub.publish('fence/a', 'fence', 0)
      await c.until(() => payloads(c).includes('four'))
      await a.until(() => payloads(a).includes('fence'))
      assert.deepEqual(payloads(a), ['one', 'two', 'three', 'fence'])
      assert.deepEqual(payloads(c), ['three', 'four'])
    } finally {
      await b.close()
    }
  })

  it('does not remember a route that left out its publisher for No Local [MQTT-3.8.3-3]', async () => {
    const b = await startBroker({}, 5)
    try {
      const { raw: own } = await b.rawConnect({ clientId: 'nl-own', cleanSession: true, keepAlive: 0 })
      await own.subscribe([{ topicFilter: 'n/t', qos: 0, noLocal: true }, { topicFilter: 'n/fence', qos: 0 }])
      const { raw: other } = await b.rawConnect({ clientId: 'nl-other', cleanSession: true, keepAlive: 0 })
      await other.subscribe('n/t', 0)

      // Alternating publishers on one topic: a route made for one must not serve the other.
      own.publish('n/t', 'own1', 0)
      other.publish('n/t', 'other1', 0)
      own.publish('n/t', 'own2', 0)
      other.publish('n/t', 'other2', 0)
      await other.until(() => payloads(other).length === 4)
      assert.deepEqual(payloads(other).sort(), ['other1', 'other2', 'own1', 'own2'])
      // The fence follows own2 from the same client: other2 is the only one that could be late.
      await own.until(() => payloads(own).includes('other2'))
      own.publish('n/fence', 'fence', 0)
      await own.until(() => payloads(own).includes('fence'))
      assert.deepEqual(payloads(own), ['other1', 'other2', 'fence'])
    } finally {
      await b.close()
    }
  })

  it('applies Retain As Published per message on a remembered route [MQTT-3.3.1-12]', async () => {
    const b = await startBroker({}, 5)
    try {
      const { raw: sub } = await b.rawConnect({ clientId: 'rap-sub', cleanSession: true, keepAlive: 0 })
      await sub.subscribe([{ topicFilter: 'rap/t', qos: 0, retainAsPublished: true }])
      const { raw: pub } = await b.rawConnect({ clientId: 'rap-pub', cleanSession: true, keepAlive: 0 })
      pub.publish('rap/t', 'plain', 0)
      pub.publish('rap/t', 'kept', 0, { retain: true })
      pub.publish('rap/t', 'plain2', 0)
      await sub.until(() => sub.publishes().length === 3)
      assert.deepEqual(sub.publishes().map((p) => [p.payload.toString(), p.retain]), [['plain', false], ['kept', true], ['plain2', false]])
    } finally {
      await b.close()
    }
  })
})
