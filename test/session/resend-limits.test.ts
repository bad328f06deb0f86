/**
 * A resumed session re-sends its unacknowledged messages [MQTT-4.4.0-1] within what the client
 * says in its new CONNECT: no more at once than its Receive Maximum [MQTT-3.3.4-9], none larger
 * than its Maximum Packet Size [MQTT-3.1.2-25]; one that can no longer be sent gives up its place.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RawMqtt, startBroker, type TestBroker } from '../helpers/index.js'

const persistent = (properties: Record<string, number>) => ({
  clientId: 'resumer',
  cleanSession: false,
  properties: { sessionExpiryInterval: 3600, ...properties },
})

/** Connects the persistent subscriber, subscribes at QoS 1 and leaves `count` messages unacknowledged. */
async function leaveUnacked(b: TestBroker, payloads: string[]): Promise<void> {
  const first = await RawMqtt.open(b.port)
  await first.connect(persistent({}))
  await first.subscribe([{ topicFilter: 't', qos: 1 }])
  for (const payload of payloads) await b.broker.publish({ topic: 't', payload, qos: 1 })
  await first.until(() => first.publishes().length === payloads.length, undefined, `${payloads.length} PUBLISH`)
  await first.drop(b, 'resumer')
}

test('20 messages in flight, the client comes back with Receive Maximum 5: 5 re-sent (DUP), the rest as acks free the window', async () => {
  const b = await startBroker()
  try {
    const payloads = Array.from({ length: 20 }, (_, i) => `m${i}`)
    await leaveUnacked(b, payloads)
    const back = await RawMqtt.open(b.port)
    assert.equal((await back.connect(persistent({ receiveMaximum: 5 }))).sessionPresent, true)
    const got: string[] = []
    while (got.length < payloads.length) {
      await back.until(() => back.pending().some((p) => p.type === 'publish'), undefined, 'a PUBLISH')
      await back.ping()
      const window = back.pending().filter((p) => p.type === 'publish')
      assert.ok(window.length <= 5, `${window.length} PUBLISH unacknowledged at once, over Receive Maximum 5`)
      for (const p of window) {
        assert.equal(p.dup, true, '[MQTT-3.3.1-1] a re-sent PUBLISH carries DUP 1')
        got.push(p.payload.toString())
        back.send({ type: 'puback', packetId: p.packetId })
      }
      back.inbox.length = 0
    }
    assert.deepEqual(got, payloads, 'all re-sent, in order')
  } finally {
    await b.close()
  }
})

test('a message in flight larger than the new Maximum Packet Size is not re-sent and frees its place (Receive Maximum 1)', async () => {
  const b = await startBroker()
  try {
    await leaveUnacked(b, ['x'.repeat(1000)])
    const back = await RawMqtt.open(b.port)
    assert.equal((await back.connect(persistent({ receiveMaximum: 1, maximumPacketSize: 512 }))).sessionPresent, true)
    await b.broker.publish({ topic: 't', payload: 'small', qos: 1 })
    const small = await back.takePublish('small')
    assert.equal(small.dup, false)
    await back.ping()
    assert.deepEqual(back.publishes().map((p) => p.payload.length), [5], 'the large message was not sent')
  } finally {
    await b.close()
  }
})
