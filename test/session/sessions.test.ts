/**
 * Sessions (MQTT 3.1.1 section 3.1.2.4 and 4.1): what outlives a connection. Persistent sessions
 * keep subscriptions and queue QoS 1/2 messages while the client is away, in-flight messages are
 * resent with DUP on reconnect, a clean session discards the old one, and a second connection
 * with the same identifier takes over.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Client, DisconnectReason } from '../../src/index.js'
import { disconnected, leave, once, ping, RawMqtt, startBroker } from '../helpers/index.js'

describe('persistent sessions (clean session 0)', () => {
  it('keep their subscriptions across a reconnect: session present 1, messages flow without re-subscribing', async () => {
    // [MQTT-3.1.2-4] the server resumes the session from the stored state;
    // [MQTT-3.2.2-2] session present is 1 when it has a stored session for the client.
    const b = await startBroker()
    try {
      const first = await b.connectRecorded({ clientId: 'keeper', clean: false })
      assert.equal(first.connack.sessionPresent, false, 'no session existed yet')
      await first.client.subscribeAsync('keep/+', { qos: 1 })
      await leave(b, first.client)

      const again = await b.connectRecorded({ clientId: 'keeper', clean: false })
      assert.equal(again.connack.sessionPresent, true)
      await b.broker.publish({ topic: 'keep/x', payload: 'still subscribed', qos: 1 })
      await again.inbox.waitCount(1)
      assert.deepEqual(again.inbox.messages.map((m) => [m.topic, m.payload]), [['keep/x', 'still subscribed']])
      await again.client.endAsync()
    } finally {
      await b.close()
    }
  })

  for (const version of [3, 4] as const) {
    it(`queue QoS 1 and 2 messages while offline and deliver them in order on reconnect (protocol ${version})`, async () => {
      // [MQTT-3.1.2-5] QoS 1 and 2 messages matching the subscriptions are stored while disconnected;
      // [MQTT-4.6.0-6] topics are ordered. Checked on the wire (a raw client), since `mqtt` only
      // reports a QoS 2 message at PUBREL.
      const b = await startBroker()
      const id = `queued-${version}`
      try {
        const { peer } = await RawMqtt.connect(b, { clientId: id, cleanSession: false, protocolVersion: version })
        await peer.subscribe('q/t', 2)
        peer.send({ type: 'disconnect' })
        await disconnected(b, id)

        const pub = await b.connect({ clientId: `queue-pub-${version}` })
        const sent: Array<[string, 1 | 2]> = []
        for (let i = 0; i < 10; i++) sent.push([`m${i}`, i % 3 === 0 ? 2 : 1])
        for (const [payload, qos] of sent) await pub.publishAsync('q/t', payload, { qos })

        const { peer: back, connack } = await RawMqtt.connect(b, { clientId: id, cleanSession: false, protocolVersion: version })
        // [MQTT-3.2.2-2] session present on resume; MQTT 3.1's CONNACK flags byte is reserved (always 0)
        assert.equal(connack.sessionPresent, version === 4)
        const got: Array<[string, number]> = []
        for (let i = 0; i < sent.length; i++) {
          const p = await back.next('publish')
          assert.equal(p.topic, 'q/t')
          got.push([p.payload.toString(), p.qos])
        }
        assert.deepEqual(got, sent)
      } finally {
        await b.close()
      }
    })
  }

  it('do not queue QoS 0 messages published while offline', async () => {
    // [MQTT-3.1.2-5] only QoS 1 and 2 must be stored; QoS 0 storage is optional and Culex drops them.
    const b = await startBroker()
    try {
      const sub = await b.connectRecorded({ clientId: 'q0', clean: false })
      await sub.client.subscribeAsync('q0/t', { qos: 2 })
      await leave(b, sub.client)

      await b.broker.publish({ topic: 'q0/t', payload: 'qos0 while away', qos: 0 })
      await b.broker.publish({ topic: 'q0/t', payload: 'qos1 while away', qos: 1 })

      const back = await b.connectRecorded({ clientId: 'q0', clean: false })
      // A live message after the queue: anything queued would arrive before it.
      await b.broker.publish({ topic: 'q0/t', payload: 'live', qos: 1 })
      await back.inbox.waitCount(2)
      assert.deepEqual(
        back.inbox.messages.map((m) => m.payload),
        ['qos1 while away', 'live'],
      )
      await back.client.endAsync()
    } finally {
      await b.close()
    }
  })

  it('queue at most limits.maxQueued messages while offline; the rest are dropped', async () => {
    // Issue 2: the offline queue is bounded by `maxQueued` (memory never grows without bound).
    const b = await startBroker({ limits: { maxQueued: 5 } })
    try {
      const sub = await b.connectRecorded({ clientId: 'bounded', clean: false })
      await sub.client.subscribeAsync('bq/t', { qos: 1 })
      await leave(b, sub.client)

      for (let i = 0; i < 9; i++) await b.broker.publish({ topic: 'bq/t', payload: `m${i}`, qos: 1 })

      const back = await b.connectRecorded({ clientId: 'bounded', clean: false })
      await b.broker.publish({ topic: 'bq/t', payload: 'live', qos: 1 })
      await back.inbox.waitCount(6)
      assert.deepEqual(
        back.inbox.messages.map((m) => m.payload),
        ['m0', 'm1', 'm2', 'm3', 'm4', 'live'],
      )
      await back.client.endAsync()
    } finally {
      await b.close()
    }
  })

  it('resend unacknowledged QoS 1 messages on reconnect with DUP 1 and the same packet identifier', async () => {
    // [MQTT-4.4.0-1] on reconnect with clean session 0 the server re-sends unacknowledged PUBLISH
    // packets using their original packet identifiers; [MQTT-3.3.1-1] with DUP set to 1.
    const b = await startBroker()
    try {
      const { peer } = await RawMqtt.connect(b, { clientId: 'no-ack', cleanSession: false })
      await peer.subscribe('dup/t', 1)
      await b.broker.publish({ topic: 'dup/t', payload: 'unacked', qos: 1 })
      const original = await peer.next('publish')
      assert.equal(original.qos, 1)
      assert.equal(original.dup, false)
      await peer.drop(b, 'no-ack')

      const { peer: again, connack } = await RawMqtt.connect(b, { clientId: 'no-ack', cleanSession: false })
      assert.equal(connack.sessionPresent, true)
      const resent = await again.next('publish')
      assert.equal(resent.dup, true, 'DUP flag on the redelivery')
      assert.equal(resent.packetId, original.packetId, 'same packet identifier')
      assert.equal(resent.qos, 1)
      assert.equal(resent.topic, 'dup/t')
      assert.equal(resent.payload.toString(), 'unacked')
      // Acknowledged now: it is not sent a third time.
      again.send({ type: 'puback', packetId: resent.packetId })
      await again.ping() // the broker has handled the PUBACK, and sent whatever it would on it
      assert.deepEqual(again.pending(), [])
    } finally {
      await b.close()
    }
  })

  it('resend PUBREL on reconnect for a QoS 2 message whose PUBREC was sent', async () => {
    // [MQTT-4.4.0-1] unacknowledged PUBREL packets are re-sent with their original identifiers;
    // [MQTT-4.3.3-1] once PUBREC is received the PUBLISH is not sent again, only PUBREL.
    const b = await startBroker()
    try {
      const { peer } = await RawMqtt.connect(b, { clientId: 'half-q2', cleanSession: false })
      await peer.subscribe('q2/t', 2)
      await b.broker.publish({ topic: 'q2/t', payload: 'exactly once', qos: 2 })
      const publish = await peer.next('publish')
      const packetId = publish.packetId
      assert.equal(publish.qos, 2)
      peer.send({ type: 'pubrec', packetId })
      const pubrel = await peer.next('pubrel')
      assert.equal(pubrel.packetId, packetId)
      // No PUBCOMP: the broker must still hold the message in the PUBREL state.
      await peer.drop(b, 'half-q2')

      const { peer: again, connack } = await RawMqtt.connect(b, { clientId: 'half-q2', cleanSession: false })
      assert.equal(connack.sessionPresent, true)
      const resent = await again.next('pubrel')
      assert.equal(resent.packetId, packetId)
      again.send({ type: 'pubcomp', packetId })
      await again.ping()
      assert.deepEqual(again.pending(), [], 'no PUBLISH of the released message after PUBREL')
    } finally {
      await b.close()
    }
  })

  it('send at most limits.maxInflight unacknowledged QoS 1 messages; the next follows an acknowledgement', async () => {
    // Issue 2: `maxInflight` bounds a client's outgoing unacknowledged QoS 1/2 messages; the rest
    // wait in the session queue, in order [MQTT-4.6.0-6].
    const b = await startBroker({ limits: { maxInflight: 2 } })
    try {
      const { peer } = await RawMqtt.connect(b, { clientId: 'slow', cleanSession: true })
      await peer.subscribe('fc/t', 1)
      for (let i = 0; i < 4; i++) await b.broker.publish({ topic: 'fc/t', payload: `m${i}`, qos: 1 })
      const p0 = await peer.next('publish')
      const p1 = await peer.next('publish')
      assert.deepEqual([p0.payload.toString(), p1.payload.toString()], ['m0', 'm1'])
      await peer.ping() // all four were routed before broker.publish resolved
      assert.deepEqual(peer.pending(), [], 'a third message while two are unacknowledged')

      peer.send({ type: 'puback', packetId: p0.packetId })
      const p2 = await peer.next('publish')
      assert.equal(p2.payload.toString(), 'm2')
      await peer.ping()
      assert.deepEqual(peer.pending(), [], 'one acknowledgement frees one slot')

      peer.send({ type: 'puback', packetId: p1.packetId })
      const p3 = await peer.next('publish')
      assert.equal(p3.payload.toString(), 'm3')
    } finally {
      await b.close()
    }
  })
})

describe('clean sessions (clean session 1)', () => {
  it('discard the previous session: session present 0, no queued messages, no subscriptions', async () => {
    // [MQTT-3.1.2-6] with clean session 1 the server discards any previous session and starts a
    // new one; [MQTT-3.2.2-1] session present is then 0.
    const b = await startBroker()
    try {
      const sub = await b.connectRecorded({ clientId: 'fresh', clean: false })
      await sub.client.subscribeAsync('cs/t', { qos: 1 })
      await leave(b, sub.client)
      await b.broker.publish({ topic: 'cs/t', payload: 'queued for the old session', qos: 1 })

      const clean = await b.connectRecorded({ clientId: 'fresh', clean: true })
      assert.equal(clean.connack.sessionPresent, false)
      await b.broker.publish({ topic: 'cs/t', payload: 'after the clean start', qos: 1 })
      // The fence: queued messages follow the CONNACK at once, and the live one was routed
      // before broker.publish resolved; all QoS 1, emitted as they are read.
      await ping(clean.client)
      assert.deepEqual(clean.inbox.messages, [], 'neither the queued message nor the old subscription survived')
      await leave(b, clean.client)

      // The clean session is not kept either [MQTT-3.1.2-6]: a later persistent connect finds nothing.
      const later = await b.connectRecorded({ clientId: 'fresh', clean: false })
      assert.equal(later.connack.sessionPresent, false)
      await ping(later.client)
      assert.deepEqual(later.inbox.messages, [])
      await later.client.endAsync()
    } finally {
      await b.close()
    }
  })
})

describe('takeover', () => {
  it('a second connection with the same client id closes the first, which is reported as taken-over', async () => {
    // [MQTT-3.1.4-2] if the client id is already connected, the server disconnects the existing client.
    const b = await startBroker()
    try {
      const connects: Client[] = []
      const disconnects: Array<[Client, DisconnectReason]> = []
      b.broker.on('clientConnect', (c) => connects.push(c))
      b.broker.on('clientDisconnect', (c, reason) => disconnects.push([c, reason]))

      const first = await b.connect({ clientId: 'twin' })
      const firstClosed = once(first, 'close')
      const reported = disconnected(b, 'twin')
      const second = await b.connect({ clientId: 'twin' })
      await firstClosed
      const [gone, reason] = await reported

      assert.equal(connects.length, 2)
      assert.equal(gone, connects[0], 'the first connection is the one that went away')
      assert.equal(reason, 'taken-over')
      assert.equal(gone.connected, false)
      assert.equal(connects[1]?.connected, true)
      assert.deepEqual(disconnects, [[connects[0], 'taken-over']])

      // The second connection is fully served.
      await second.subscribeAsync('twin/t', { qos: 1 })
      const got = once<[string, Buffer]>(second, 'message')
      await b.broker.publish({ topic: 'twin/t', payload: 'to the survivor', qos: 1 })
      const [topic, payload] = await got
      assert.equal(topic, 'twin/t')
      assert.equal(payload.toString(), 'to the survivor')
    } finally {
      await b.close()
    }
  })
})
