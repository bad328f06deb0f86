/**
 * `capabilities.retainAvailable: false` and `capabilities.maximumQoS` hold for MQTT 3.1 and
 * 3.1.1 clients too. Those protocols cannot say why, so what MQTT 5 refuses with a reason code
 * they refuse by closing the connection (a PUBLISH), or with CONNACK 5, not authorized (a will).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { RawMqtt, startBroker, withBroker } from '../helpers/index.js'

for (const protocolVersion of [3, 4] as const) {
  describe(`protocol level ${protocolVersion}`, () => {
    test('retainAvailable false: a retained PUBLISH closes the connection and nothing is retained', async () => {
      await withBroker({ capabilities: { retainAvailable: false } }, async (b) => {
        const watcher = await RawMqtt.open(b, 'watcher', protocolVersion)
        await watcher.subscribe('kept', 0)
        const client = await RawMqtt.open(b, 'retainer', protocolVersion)
        client.publish('kept', 'value', 0, { retain: true })
        await client.waitClosed()
        // Not routed either: a later message on the topic is the first the watcher sees.
        await b.broker.publish({ topic: 'kept', payload: 'after' })
        await watcher.takePublish('after')
        assert.deepEqual(watcher.publishes().map((p) => p.payload.toString()), ['after'])
        const late = await RawMqtt.open(b, 'late', protocolVersion)
        await late.subscribe('kept', 0)
        await late.ping()
        assert.deepEqual(late.publishes(), [], 'no retained message was stored')
      })
    })

    test('maximumQoS 1: a QoS 2 PUBLISH closes the connection and is not delivered', async () => {
      await withBroker({ capabilities: { maximumQoS: 1 } }, async (b) => {
        const watcher = await RawMqtt.open(b, 'watcher', protocolVersion)
        await watcher.subscribe('t', 1)
        const client = await RawMqtt.open(b, 'eager', protocolVersion)
        client.publish('t', 'two', 2, 1)
        await client.waitClosed()
        assert.deepEqual(client.pending().filter((p) => p.type === 'pubrec'), [], 'no PUBREC')
        await b.broker.publish({ topic: 't', payload: 'after' })
        await watcher.takePublish('after')
        assert.deepEqual(watcher.publishes().map((p) => p.payload.toString()), ['after'])
      })
    })

    test('a will the capabilities do not allow (retained, or QoS 2 over maximumQoS 1) is refused with CONNACK 5', async () => {
      await withBroker({ capabilities: { retainAvailable: false, maximumQoS: 1 } }, async (b) => {
        for (const will of [
          { topic: 'w', payload: Buffer.from('x'), qos: 0 as const, retain: true },
          { topic: 'w', payload: Buffer.from('x'), qos: 2 as const, retain: false },
        ]) {
          const client = await b.raw(protocolVersion)
          client.send({ type: 'connect', protocolName: protocolVersion === 3 ? 'MQIsdp' : 'MQTT', protocolVersion, cleanSession: true, keepAlive: 0, clientId: 'willing', will })
          const connack = await client.next('connack')
          assert.equal(connack.returnCode, 5)
          await client.waitClosed()
        }
      })
    })
  })
}

test('retainAvailable false: broker.publish with retain is refused, since nothing can be retained', async () => {
  const b = await startBroker({ capabilities: { retainAvailable: false } })
  try {
    await assert.rejects(b.broker.publish({ topic: 't', payload: 'x', retain: true }), /retain/)
  } finally {
    await b.close()
  }
})
