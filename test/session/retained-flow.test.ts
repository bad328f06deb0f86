/**
 * A SUBSCRIBE gets every matching retained message [MQTT-3.3.1-6], however many there are: they
 * stream as the in-flight window frees (QoS 1/2) or the write buffer drains (QoS 0), never more
 * than the client's window at once, never silently cut at maxInflight + maxQueued.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RawMqtt, startBroker } from '../helpers/index.js'

const COUNT = 200

test(`QoS 1: all ${COUNT} retained messages arrive with maxInflight 10 and maxQueued 20, never more than 10 unacknowledged`, async () => {
  const b = await startBroker({ limits: { maxInflight: 10, maxQueued: 20 } })
  try {
    for (let i = 0; i < COUNT; i++) await b.broker.publish({ topic: `r/${i}`, payload: String(i), qos: 1, retain: true })
    const client = await RawMqtt.open(b, 'many')
    client.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'r/#', qos: 1 }] })
    await client.next('suback')
    const seen = new Set<string>()
    while (seen.size < COUNT) {
      // Take what the window allows, prove with a PINGREQ round trip that nothing more came, then ack it all.
      await client.until(() => client.pending().some((p) => p.type === 'publish'), undefined, 'a retained PUBLISH')
      await client.ping()
      const window = client.pending().filter((p) => p.type === 'publish')
      assert.ok(window.length <= 10, `${window.length} PUBLISH unacknowledged at once, over maxInflight 10`)
      for (const p of window) {
        assert.equal(p.retain, true, '[MQTT-3.3.1-8] RETAIN 1 on a retained message sent for a new subscription')
        seen.add(p.payload.toString())
        client.send({ type: 'puback', packetId: p.packetId })
      }
      client.inbox.length = 0
    }
    assert.equal(seen.size, COUNT)
  } finally {
    await b.close()
  }
})

test(`QoS 0: all ${COUNT} retained messages arrive through a 1 KiB write buffer`, async () => {
  const b = await startBroker({ limits: { maxWriteBuffer: 1024, maxInflight: 10, maxQueued: 20 } })
  try {
    const payload = 'x'.repeat(100)
    for (let i = 0; i < COUNT; i++) await b.broker.publish({ topic: `r/${i}`, payload: `${i}:${payload}`, retain: true })
    const client = await RawMqtt.open(b, 'zero')
    await client.subscribe('r/#', 0)
    await client.until(() => client.publishes().length >= COUNT, undefined, `${COUNT} retained messages`)
    const numbers = new Set(client.publishes().map((p) => p.payload.toString().split(':')[0]))
    assert.equal(numbers.size, COUNT)
  } finally {
    await b.close()
  }
})

test('retained messages still streaming stop at UNSUBSCRIBE', async () => {
  const b = await startBroker({ limits: { maxInflight: 5 } })
  try {
    for (let i = 0; i < 50; i++) await b.broker.publish({ topic: `r/${i}`, payload: String(i), qos: 1, retain: true })
    const client = await RawMqtt.open(b, 'quitter')
    client.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'r/#', qos: 1 }] })
    await client.next('suback')
    await client.until(() => client.publishes().length >= 5, undefined, 'the first window')
    client.send({ type: 'unsubscribe', packetId: 2, topicFilters: ['r/#'] })
    await client.take('unsuback')
    // The window in flight is still acknowledged; nothing of the stream follows the UNSUBACK.
    for (const p of client.publishes()) client.send({ type: 'puback', packetId: p.packetId })
    await client.ping()
    assert.equal(client.publishes().length, 5)
  } finally {
    await b.close()
  }
})
