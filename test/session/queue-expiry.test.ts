/**
 * A full session queue makes room by dropping expired messages before it refuses a fresh one
 * [MQTT-3.3.2-5]: an expired message is never delivered, so it must not hold a slot either.
 */
import assert from 'node:assert/strict'
import { mock, test } from 'node:test'
import { RawV5, startBroker } from '../helpers/index.js'

test('expired queued messages give their slots to fresh ones (maxQueued 2)', async () => {
  mock.timers.enable({ apis: ['Date'], now: 1_000_000 })
  const b = await startBroker({ limits: { maxQueued: 2 } })
  try {
    const persistent = { clientId: 'offline', cleanSession: false, properties: { sessionExpiryInterval: 3600 } }
    const subscriber = await RawV5.open(b.port)
    assert.equal((await subscriber.connect(persistent)).returnCode, 0)
    await subscriber.subscribe([{ topicFilter: 'q/t', qos: 1 }])
    subscriber.send({ type: 'disconnect', reasonCode: 0 })
    await subscriber.waitClosed()

    const publisher = await RawV5.open(b.port)
    await publisher.connect({ clientId: 'publisher' })
    for (const [packetId, payload] of [[1, 'stale-1'], [2, 'stale-2']] as const) {
      publisher.publish('q/t', payload, 1, { packetId, properties: { messageExpiryInterval: 1 } })
      await publisher.take('puback', (p) => p.packetId === packetId)
    }
    // Both queued messages expire; the queue is still "full" of them.
    mock.timers.tick(2_000)
    publisher.publish('q/t', 'fresh', 1, { packetId: 3 })
    await publisher.take('puback', (p) => p.packetId === 3)

    const back = await RawV5.open(b.port)
    const connack = await back.connect(persistent)
    assert.equal(connack.sessionPresent, true)
    const fresh = await back.takePublish('fresh')
    back.send({ type: 'puback', packetId: fresh.packetId })
    // Queue order: anything else still queued would have come before 'fresh'.
    assert.deepEqual(
      back.publishes().map((p) => p.payload.toString()),
      ['fresh'],
    )
  } finally {
    mock.timers.reset()
    await b.close()
  }
})
