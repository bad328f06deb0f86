/**
 * `broker.getSession` lets the host see a session, online or not, with what it dropped.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { withBroker } from '../helpers/index.js'

test('getSession reports an offline persistent session with its queue and the messages dropped when it was full', async () => {
  await withBroker({ limits: { maxQueued: 2 } }, async (b) => {
    const { raw: sub } = await b.rawConnect({ clientId: 'counted', cleanSession: false })
    await sub.subscribe('c/#', 1)
    await sub.drop(b, 'counted')
    const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
    for (let i = 1; i <= 5; i++) {
      pub.publish('c/x', `m${i}`, 1, { packetId: i })
      await pub.next('puback')
    }
    assert.deepEqual(b.broker.getSession('counted'), {
      clientId: 'counted',
      persistent: true,
      connected: false,
      expiryInterval: 0xffffffff,
      subscriptions: 1,
      inflight: 0,
      queued: 2,
      queuedBytes: 2 * ('m1'.length + 'c/x'.length),
      dropped: 3,
    })
    assert.equal(b.broker.getSession('pub')?.connected, true)
    assert.equal(b.broker.getSession('pub')?.persistent, false)
    assert.equal(b.broker.getSession('nobody'), undefined)
  })
})
