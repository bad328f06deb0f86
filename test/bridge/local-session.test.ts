/**
 * A bridge's local session (its outbox, client id `bridge:<name>`): reserved for the broker's own
 * bridge (a network client asking for the id is refused, so it can neither take the outbox over,
 * and acknowledge away what waits for the remote, nor kick the bridge); its subscriptions follow
 * the bridge's configuration from one start to the next; and its URL is listed without a password.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { maskUrlPassword } from '../../src/bridge/options.js'
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

test('a bridge started with other topics unsubscribes its session from the filters no longer configured', async () => {
  await withBroker({}, async (b) => {
    const url = `mqtt://127.0.0.1:${await freePort()}`
    const first = await b.broker.bridge({ name: 'cloud', url, topics: [{ filter: 'old/#' }, { filter: 'kept/#' }], reconnectPeriod: 50, maxReconnectPeriod: 200 })
    await first.close()
    assert.deepEqual(b.broker.getSubscriptions('bridge:cloud')?.map((s) => s.topicFilter).sort(), ['kept/#', 'old/#'], 'the session keeps them while the bridge is away')
    const second = await b.broker.bridge({ name: 'cloud', url, topics: [{ filter: 'kept/#' }, { filter: 'new/#' }], reconnectPeriod: 50, maxReconnectPeriod: 200 })
    try {
      // A fence: the bridge's start resolves once it subscribed; the unsubscribe went before it on the same connection.
      await b.broker.publish({ topic: 'old/x', payload: 'no longer bridged', qos: 1 })
      assert.deepEqual(b.broker.getSubscriptions('bridge:cloud')?.map((s) => s.topicFilter).sort(), ['kept/#', 'new/#'])
      const outbox = b.broker.getSession('bridge:cloud')
      assert.equal((outbox?.inflight ?? 0) + (outbox?.queued ?? 0), 0, 'old/x was not queued for the remote')
    } finally {
      await second.close()
    }
  })
})

test('broker.bridges shows the URL without its password, also for URLs the WHATWG parser refuses', async () => {
  assert.equal(maskUrlPassword('mqtts://site:s3cret@cloud.example:8883'), 'mqtts://site:***@cloud.example:8883')
  assert.equal(maskUrlPassword('wss://site:s3cret@cloud.example/mqtt'), 'wss://site:***@cloud.example/mqtt')
  assert.equal(maskUrlPassword('mqtt://cloud.example:1883'), 'mqtt://cloud.example:1883', 'no password: as given')
  assert.equal(maskUrlPassword('mqtt://u:p#ss@cloud.example'), 'mqtt://***@cloud.example', 'unparsable: all the user info masked')
  await withBroker({}, async (b) => {
    const port = await freePort()
    const handle = await b.broker.bridge({ name: 'cloud', url: `mqtt://site:s3cret@127.0.0.1:${port}`, topics: [{ filter: 'up/#' }], reconnectPeriod: 50, maxReconnectPeriod: 200 })
    try {
      assert.deepEqual(b.broker.bridges.map((x) => x.url), [`mqtt://site:***@127.0.0.1:${port}`])
    } finally {
      await handle.close()
    }
  })
})
