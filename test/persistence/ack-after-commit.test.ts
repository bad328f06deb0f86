/**
 * With a durable adapter, every acknowledgement waits for the commit that keeps its promise, and a
 * failed commit acknowledges nothing. The store here is the memory adapter behind a gate the test
 * holds and releases, declared durable; the crash tests (test/crash) prove the same on real stores.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { PersistenceOp } from '../../src/index.js'
import { GatedStore, nextTurn, startBroker, type TestBroker } from '../helpers/index.js'

async function withStore(fn: (b: TestBroker, store: GatedStore) => Promise<void>): Promise<void> {
  const store = new GatedStore()
  const b = await startBroker({ persistence: store.adapter })
  try {
    await fn(b, store)
  } finally {
    store.heal()
    store.release()
    await b.close()
  }
}

/** A persistent 3.1.1 subscriber to `filter`, gone offline. */
async function offlineSubscriber(b: TestBroker, clientId: string, filter: string, qos: 1 | 2 = 1): Promise<void> {
  const { raw } = await b.rawConnect({ clientId, cleanSession: false })
  await raw.subscribe(filter, qos)
  await raw.drop(b, clientId)
}

const ops = (batch: readonly PersistenceOp[], kind: PersistenceOp['op']): PersistenceOp[] => batch.filter((o) => o.op === kind)

describe('acknowledgements wait for the commit', () => {
  test('PUBACK leaves only once the message is stored in the offline persistent session', async () => {
    await withStore(async (b, store) => {
      await offlineSubscriber(b, 'keeper', 'queued/#')
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      store.hold()
      pub.publish('queued/1', 'kept', 1, { packetId: 7 })
      const batch = await store.waiting()
      assert.equal(ops(batch, 'message').length, 1)
      assert.deepEqual(
        ops(batch, 'enqueue').map((o) => (o.op === 'enqueue' ? o.clientId : '')),
        ['keeper'],
      )
      // The fence: PINGRESP does not wait for the store, PUBACK does.
      await pub.ping()
      assert.deepEqual(pub.pending(), [])
      store.release()
      assert.equal((await pub.next('puback')).packetId, 7)
    })
  })

  test('a QoS 1 PUBLISH that changes nothing stored is acknowledged while a commit is held', async () => {
    await withStore(async (b, store) => {
      await offlineSubscriber(b, 'keeper', 'queued/#')
      const { raw: other } = await b.rawConnect({ clientId: 'other' })
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      store.hold()
      other.publish('queued/1', 'held', 1, { packetId: 1 })
      await store.waiting()
      pub.publish('nobody/listens', 'free', 1, { packetId: 2 })
      assert.equal((await pub.next('puback')).packetId, 2)
      assert.deepEqual(other.pending(), [])
    })
  })

  test('PUBACKs keep their order: one that stored nothing waits behind one that did', async () => {
    await withStore(async (b, store) => {
      await offlineSubscriber(b, 'keeper', 'queued/#')
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      store.hold()
      pub.publish('queued/1', 'stored', 1, { packetId: 1 })
      pub.publish('nobody/listens', 'not stored', 1, { packetId: 2 })
      await store.waiting()
      await pub.ping()
      assert.deepEqual(pub.pending(), [])
      store.release()
      assert.equal((await pub.next('puback')).packetId, 1)
      assert.equal((await pub.next('puback')).packetId, 2)
    })
  })

  test('SUBACK of a persistent session waits for the subscription to be stored; a clean session does not wait', async () => {
    await withStore(async (b, store) => {
      const { raw: durable } = await b.rawConnect({ clientId: 'durable', cleanSession: false })
      const { raw: clean } = await b.rawConnect({ clientId: 'clean' })
      store.hold()
      durable.send({ type: 'subscribe', packetId: 3, subscriptions: [{ topicFilter: 'a/+', qos: 1 }] })
      const batch = await store.waiting()
      assert.equal(ops(batch, 'subscribe').length, 1)
      await clean.subscribe('b/+', 1)
      await durable.ping()
      assert.deepEqual(durable.pending(), [])
      store.release()
      assert.deepEqual((await durable.next('suback')).reasonCodes, [1])
    })
  })

  test('CONNACK of a persistent session waits for the session to be stored', async () => {
    await withStore(async (b, store) => {
      const raw = await b.raw()
      store.hold()
      raw.send({ type: 'connect', protocolName: 'MQTT', protocolVersion: 4, cleanSession: false, keepAlive: 0, clientId: 'slow-start' })
      const batch = await store.waiting()
      assert.deepEqual(ops(batch, 'sessionCreate'), [{ op: 'sessionCreate', clientId: 'slow-start', expiryInterval: 0xffffffff }])
      assert.deepEqual(raw.pending(), [])
      store.release()
      const connack = await raw.next('connack')
      assert.equal(connack.returnCode, 0)
    })
  })

  test('a clean session is accepted while a commit is held: it waits for nothing stored', async () => {
    await withStore(async (b, store) => {
      const { raw: durable } = await b.rawConnect({ clientId: 'durable', cleanSession: false })
      store.hold()
      durable.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'held', qos: 1 }] })
      await store.waiting()
      const raw = await b.raw()
      const connack = await raw.connect({ clientId: 'passer-by', cleanSession: true })
      assert.equal(connack.returnCode, 0)
      assert.deepEqual(durable.pending(), [])
    })
  })

  test('broker.publish resolves once the message is stored for the offline persistent session', async () => {
    await withStore(async (b, store) => {
      await offlineSubscriber(b, 'keeper', 'host/#')
      store.hold()
      let resolved = false
      const publishing = b.broker.publish({ topic: 'host/1', payload: 'kept', qos: 1 }).then((result) => {
        resolved = true
        return result
      })
      await store.waiting()
      await nextTurn()
      assert.equal(resolved, false)
      store.release()
      assert.deepEqual(await publishing, { matched: 1 })
    })
  })

  test('PUBCOMP waits for the release of the QoS 2 identifier to be stored', async () => {
    await withStore(async (b, store) => {
      const { raw: pub } = await b.rawConnect({ clientId: 'pub2', cleanSession: false })
      pub.publish('x', 'twice?', 2, { packetId: 9 })
      await pub.next('pubrec')
      store.hold()
      pub.send({ type: 'pubrel', packetId: 9 })
      const batch = await store.waiting()
      assert.deepEqual(ops(batch, 'qos2Released'), [{ op: 'qos2Released', clientId: 'pub2', packetId: 9 }])
      await pub.ping()
      assert.deepEqual(pub.pending(), [])
      store.release()
      assert.equal((await pub.next('pubcomp')).packetId, 9)
    })
  })

  test('PUBREL to a subscriber waits for its PUBREC state to be stored', async () => {
    await withStore(async (b, store) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'sub2', cleanSession: false })
      await sub.subscribe('q2', 2)
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('q2', 'exactly once', 2, { packetId: 1 })
      const delivered = await sub.takePublish('exactly once')
      store.hold()
      sub.send({ type: 'pubrec', packetId: delivered.packetId })
      const batch = await store.waiting()
      assert.equal(ops(batch, 'received').length, 1)
      await sub.ping()
      assert.deepEqual(sub.pending(), [])
      store.release()
      assert.equal((await sub.next('pubrel')).packetId, delivered.packetId)
    })
  })

  test('a QoS 1 message to an online persistent subscriber is sent only once it is stored', async () => {
    await withStore(async (b, store) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'online', cleanSession: false })
      await sub.subscribe('live', 1)
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      store.hold()
      pub.publish('live', 'wait for it', 1, { packetId: 1 })
      await store.waiting()
      await sub.ping()
      assert.deepEqual(sub.publishes(), [])
      store.release()
      assert.equal((await sub.takePublish('wait for it')).qos, 1)
    })
  })

  test('a PUBLISH to an online persistent subscriber is written only once its packet identifier is committed', async () => {
    // Written earlier, a crash would restore the delivery as never sent: it would go again as a
    // new message with a new identifier, a second copy for a QoS 2 subscriber.
    await withStore(async (b, store) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'online', cleanSession: false })
      await sub.subscribe('live', 2)
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      store.hold()
      pub.publish('live', 'once', 2, { packetId: 1 })
      await store.waiting()
      // The commits after this one stay held: a PUBLISH waiting for one of them never arrives.
      store.releaseHeld()
      const delivered = await sub.takePublish('once')
      const sent = store.committed.flat().filter((o) => o.op === 'sent' && o.clientId === 'online')
      assert.deepEqual(sent, [{ op: 'sent', clientId: 'online', seq: 1, packetId: delivered.packetId }])
    })
  })
})

describe('a failing store acknowledges nothing', () => {
  for (const mode of ['throw', 'reject'] as const) {
    test(`commits that ${mode}: MQTT 5 gets PUBACK 0x80, 3.1.1 is disconnected, the host is told, and acknowledgements resume once the store is back`, async () => {
      await withStore(async (b, store) => {
        const errors: Error[] = []
        b.broker.on('persistenceError', (error) => errors.push(error))
        await offlineSubscriber(b, 'keeper', 'queued/#')
        const { raw: v5 } = await b.rawConnect({ clientId: 'v5' }, 5)
        const { raw: v4 } = await b.rawConnect({ clientId: 'v4' }, 4)
        store.fail(mode)
        v5.publish('queued/a', 'refused', 1, { packetId: 1 })
        const refused = await v5.next('puback')
        assert.equal(refused.reasonCode, 0x80)
        v4.publish('queued/b', 'unacknowledged', 1, { packetId: 1 })
        await v4.waitClosed()
        assert.equal(v4.pending().filter((p) => p.type === 'puback').length, 0)
        assert.ok(errors.length >= 1)
        assert.equal(errors[0]?.message, 'disk on fire')
        store.heal()
        v5.publish('queued/c', 'taken', 1, { packetId: 2 })
        const taken = await v5.next('puback')
        assert.equal(taken.reasonCode ?? 0, 0)
        // What the failed commits held was committed again: the session has all three.
        const stored = store.memory.open().sessions.find((s) => s.clientId === 'keeper')
        assert.deepEqual(
          stored?.deliveries.map((d) => d.message.payload.toString()),
          ['refused', 'unacknowledged', 'taken'],
        )
      })
    })
  }

  test('a QoS 2 PUBLISH the store could not keep disconnects the MQTT 5 publisher and keeps its identifier: the resend is delivered once', async () => {
    await withStore(async (b, store) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'sub', cleanSession: false }, 5)
      await sub.subscribe('once', 2)
      const session = { clientId: 'pub2', cleanSession: false, properties: { sessionExpiryInterval: 300 } }
      const { raw: pub } = await b.rawConnect(session, 5)
      store.fail('reject')
      pub.publish('once', 'exactly', 2, { packetId: 4 })
      await pub.expectDisconnect(0x80)
      store.heal()
      const { raw: again, connack } = await b.rawConnect(session, 5)
      assert.equal(connack.sessionPresent, true)
      again.publish('once', 'exactly', 2, { packetId: 4, dup: true })
      assert.equal((await again.next('pubrec')).reasonCode ?? 0, 0)
      again.send({ type: 'pubrel', packetId: 4 })
      await again.next('pubcomp')
      const delivered = await sub.takePublish('exactly')
      sub.send({ type: 'pubrec', packetId: delivered.packetId })
      await sub.next('pubrel')
      sub.send({ type: 'pubcomp', packetId: delivered.packetId })
      await sub.ping()
      assert.equal(sub.publishes().filter((p) => p.payload.toString() === 'exactly').length, 1)
    })
  })
})
