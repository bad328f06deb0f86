/** Large QoS 1/2 messages fanned out: each subscriber gets its own packet identifier and the exact payload. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RawMqtt, startBroker } from '../helpers/index.js'

test('a 100 KiB QoS 1 and QoS 2 message reaches three subscribers intact, each with its own packet identifier', async () => {
  const b = await startBroker()
  try {
    const subs = await Promise.all([1, 2, 3].map((i) => RawMqtt.open(b, `big-sub-${i}`)))
    for (const s of subs) {
      s.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'big', qos: 2 }] })
      await s.take('suback')
    }
    // Different identifiers per subscriber: give them different histories first.
    subs[1]?.send({ type: 'subscribe', packetId: 2, subscriptions: [{ topicFilter: 'warm', qos: 1 }] })
    await subs[1]?.take('suback')
    const pub = await b.connect({ clientId: 'big-pub' })
    await pub.publishAsync('warm', 'x', { qos: 1 })
    const warm = await subs[1]?.take('publish')
    subs[1]?.send({ type: 'puback', packetId: warm?.packetId ?? 0 })

    const payloads = [Buffer.alloc(100 * 1024, 1), Buffer.alloc(100 * 1024, 2)]
    await pub.publishAsync('big', payloads[0] as Buffer, { qos: 1 })
    await pub.publishAsync('big', payloads[1] as Buffer, { qos: 2 })
    const ids: number[][] = []
    for (const s of subs) {
      const first = await s.take('publish')
      const second = await s.take('publish')
      assert.equal(first.qos, 1)
      assert.equal(second.qos, 2)
      assert.ok(first.payload.equals(payloads[0] as Buffer), 'first payload intact')
      assert.ok(second.payload.equals(payloads[1] as Buffer), 'second payload intact')
      assert.equal(first.dup, false)
      ids.push([first.packetId, second.packetId])
    }
    assert.notDeepEqual(ids[1], ids[0], 'subscriber 2 has its own packet identifiers')
    for (const [a, c] of ids) assert.ok(a !== 0 && c !== 0 && a !== c)
  } finally {
    await b.close()
  }
})
