/**
 * A broker restarted on the same persistence adapter resumes where the previous one stopped:
 * persistent sessions (subscriptions, queued and in-flight messages) and retained messages.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MemoryPersistence, type PersistenceOp } from '../../src/index.js'
import { leave, RawMqtt, startBroker, storedState, until, wrapAdapter, type PacketOf } from '../helpers/index.js'

describe('restart on the same persistence', () => {
  it('restores a persistent session with its queued messages, and the retained messages', async () => {
    // [MQTT-3.1.2-4] the session state is kept and resumed ("MUST resume communications with the
    // Client based on state from the current Session"); [MQTT-3.1.2-5] with the QoS 1/2 messages
    // stored while it was away; [MQTT-3.2.2-2] session present 1. Retained messages are kept per
    // topic [MQTT-3.3.1-5] and sent to new subscribers with RETAIN 1 [MQTT-3.3.1-8].
    const persistence = new MemoryPersistence()

    const first = await startBroker({ persistence })
    try {
      const sub = await first.connectRecorded({ clientId: 'survivor', clean: false })
      await sub.client.subscribeAsync('news/+', { qos: 1 })
      await leave(first, sub.client)

      const pub = await first.connect({ clientId: 'publisher' })
      await pub.publishAsync('kept/topic', 'retained across restarts', { qos: 1, retain: true })
      for (const n of [1, 2, 3]) await pub.publishAsync(`news/${n}`, `queued ${n}`, { qos: 1 })
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence })
    try {
      const back = await second.connectRecorded({ clientId: 'survivor', clean: false })
      assert.equal(back.connack.sessionPresent, true)
      await back.inbox.waitCount(3)
      assert.deepEqual(
        back.inbox.messages.map((m) => [m.topic, m.payload, m.qos]),
        [
          ['news/1', 'queued 1', 1],
          ['news/2', 'queued 2', 1],
          ['news/3', 'queued 3', 1],
        ],
      )
      // The restored subscription routes new messages without re-subscribing.
      await second.broker.publish({ topic: 'news/4', payload: 'live', qos: 1 })
      await back.inbox.waitCount(4)
      assert.deepEqual(back.inbox.messages[3], { topic: 'news/4', payload: 'live', qos: 1, retain: false, dup: false })

      const late = await second.connectRecorded({ clientId: 'late' })
      await late.client.subscribeAsync('kept/#', { qos: 1 })
      await late.inbox.waitCount(1)
      assert.deepEqual(late.inbox.messages, [{ topic: 'kept/topic', payload: 'retained across restarts', qos: 1, retain: true, dup: false }])
      await back.client.endAsync()
      await late.client.endAsync()
    } finally {
      await second.close()
    }
  })

  it('resends an unacknowledged QoS 1 message with DUP and its packet identifier after a restart', async () => {
    // [MQTT-4.4.0-1] unacknowledged PUBLISH packets are re-sent with their original identifiers on
    // reconnect with clean session 0; [MQTT-3.3.1-1] DUP is 1 on a redelivery.
    const persistence = new MemoryPersistence()

    let original: PacketOf<'publish'>
    const first = await startBroker({ persistence })
    try {
      const { peer } = await RawMqtt.connect(first, { clientId: 'unacked', cleanSession: false })
      await peer.subscribe('inflight/t', 1)
      await first.broker.publish({ topic: 'inflight/t', payload: 'never acked', qos: 1 })
      original = await peer.next('publish')
      assert.equal(original.dup, false)
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence })
    try {
      const { peer, connack } = await RawMqtt.connect(second, { clientId: 'unacked', cleanSession: false })
      assert.equal(connack.sessionPresent, true)
      const resent = await peer.next('publish')
      assert.equal(resent.dup, true)
      assert.equal(resent.packetId, original.packetId)
      assert.equal(resent.topic, 'inflight/t')
      assert.equal(resent.payload.toString(), 'never acked')
    } finally {
      await second.close()
    }
  })

  it('forgets a session that ended clean before the restart', async () => {
    // [MQTT-3.1.2-6] a clean session's state lasts only as long as the network connection.
    const persistence = new MemoryPersistence()
    const first = await startBroker({ persistence })
    try {
      const once = await first.connectRecorded({ clientId: 'ephemeral', clean: true })
      await once.client.subscribeAsync('x/#', { qos: 1 })
      await leave(first, once.client)
    } finally {
      await first.close()
    }
    assert.deepEqual((await storedState(persistence)).sessions, [])

    const second = await startBroker({ persistence })
    try {
      const again = await second.connectRecorded({ clientId: 'ephemeral', clean: false })
      assert.equal(again.connack.sessionPresent, false)
      await again.client.endAsync()
    } finally {
      await second.close()
    }
  })

  it('publishes the will of a client that was connected when the broker stopped without close()', async () => {
    // [MQTT-3.1.2-8] the will MUST be published when the network connection is closed without
    // DISCONNECT; a crash closes it. The crash is simulated by starting the second broker on a
    // copy of what the first had committed while the client was still connected.
    const persistence = new MemoryPersistence()
    const committed: PersistenceOp[] = []
    const recording = wrapAdapter(persistence, {
      commit: (ops) => {
        committed.push(...ops)
        persistence.commit(ops)
      },
    })
    const snapshot = new MemoryPersistence()
    const first = await startBroker({ persistence: recording })
    try {
      await first.connectRecorded({
        clientId: 'crashed',
        clean: false,
        will: { topic: 'wills/crashed', payload: Buffer.from('gone with the broker'), qos: 1, retain: true },
      })
      await until(() => persistence.open().sessions.find((r) => r.clientId === 'crashed')?.will !== undefined, undefined, 'the session with its will to be stored')
      snapshot.commit(committed)
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence: snapshot })
    try {
      const late = await second.connectRecorded({ clientId: 'late' })
      await late.client.subscribeAsync('wills/#', { qos: 1 })
      await late.inbox.waitCount(1)
      assert.deepEqual(late.inbox.messages, [{ topic: 'wills/crashed', payload: 'gone with the broker', qos: 1, retain: true, dup: false }])
      await late.client.endAsync()
    } finally {
      await second.close()
    }
  })
})
