/**
 * The client identifiers `bridge:<name>` belong to the local sessions of the broker's own
 * bridges (their outboxes): a network client asking for one is refused, so it can neither take
 * the outbox over (and acknowledge away what waits for the remote) nor kick the bridge.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connackCode, freePort, withBroker } from '../helpers/index.js'

test('a network client cannot connect as bridge:<name>: CONNACK 2 (MQTT 5: 0x85); the bridge keeps its session and its messages', async () => {
  await withBroker({}, async (b) => {
    const bridge = await b.broker.bridge({ name: 'cloud', url: `mqtt://127.0.0.1:${await freePort()}`, topics: [{ filter: 'up/#' }], reconnectPeriod: 50, maxReconnectPeriod: 200 })
    try {
      await b.broker.publish({ topic: 'up/1', payload: 'for the remote', qos: 1 })
      assert.equal(await connackCode(b.port, { clientId: 'bridge:cloud', clean: false }), 2)
      assert.equal(await connackCode(b.port, { clientId: 'bridge:cloud', protocolVersion: 5 }), 0x85)
      assert.equal(await connackCode(b.port, { clientId: 'bridge:other' }), 2, 'any bridge: identifier, running bridge or not')
      assert.equal(b.broker.getClient('bridge:cloud')?.transport, 'bridge', "the bridge's own client is still the one connected")
      const outbox = b.broker.getSession('bridge:cloud')
      assert.equal((outbox?.inflight ?? 0) + (outbox?.queued ?? 0), 1, 'the message still waits for the remote')
      assert.equal(await connackCode(b.port, { clientId: 'bridges:cloud' }), 0, 'only the exact prefix is reserved')
    } finally {
      await bridge.close()
    }
  })
})
