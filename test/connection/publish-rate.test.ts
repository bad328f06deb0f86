/**
 * limits.maxPublishRate: a client publishing faster than allowed is disconnected (MQTT 5: 0x96).
 * The broker's clock is mocked and stands still, so its token bucket refills nothing while the
 * test runs: exactly one second's worth is accepted, however slow the machine.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { mockClock, startBroker } from '../helpers/index.js'

test('a client over limits.maxPublishRate gets DISCONNECT 0x96; one within it is served', async (t) => {
  mockClock(t)
  const b = await startBroker({ limits: { maxPublishRate: 20 } }, 5)
  try {
    const { raw: calm } = await b.rawConnect({ clientId: 'calm' })
    for (let i = 0; i < 10; i++) calm.publish('rate', String(i), 1, { packetId: i + 1 })
    const { raw: flood } = await b.rawConnect({ clientId: 'flood' })
    for (let i = 0; i < 40; i++) flood.publish('rate', String(i), 1, { packetId: i + 1 })
    const disconnect = await flood.take('disconnect')
    assert.equal(disconnect.reasonCode, 0x96)
    // Up to one second's worth (20) was accepted before the cut.
    assert.equal(flood.all.filter((p) => p.type === 'puback').length, 20)
    // The fence: the broker has handled all ten of the calm client's PUBLISHes.
    await calm.ping()
    assert.equal(calm.all.filter((p) => p.type === 'puback').length, 10)
    assert.ok(!calm.all.some((p) => p.type === 'disconnect'))
  } finally {
    await b.close()
  }
})
