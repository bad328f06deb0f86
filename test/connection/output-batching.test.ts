/**
 * What one turn sends leaves in one write: the small packets a read produces (forwarded PUBLISHes,
 * acknowledgements) are copied into one buffer per connection and handed to the stream once, and a
 * 3.1.1 PUBLISH is forwarded as received, with the subscriber's own packet identifier and DUP flag.
 *
 * The broker's side of each client is a Duplex without `writev`, so every `write` the broker makes
 * is seen as one chunk: a write per packet (even corked) would show as one chunk per packet.
 */
import assert from 'node:assert/strict'
import { Duplex } from 'node:stream'
import { describe, it } from 'node:test'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { PublishPacket } from '../../src/protocol/packets.js'
import { nextTurn, RawMqtt, startBroker, type TestBroker } from '../helpers/index.js'

/** A client handed to the broker through a Duplex that records each chunk the broker writes. */
function recordedClient(b: TestBroker): { peer: RawMqtt; writes: Buffer[] } {
  const writes: Buffer[] = []
  // Each side pushes what the other writes (brokerSide is reached only once data flows).
  const clientSide: Duplex = new Duplex({
    allowHalfOpen: false,
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      brokerSide.push(chunk)
      callback()
    },
    final(callback) {
      brokerSide.push(null)
      callback()
    },
  })
  const brokerSide: Duplex = new Duplex({
    allowHalfOpen: false,
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      writes.push(chunk)
      clientSide.push(chunk)
      callback()
    },
    final(callback) {
      clientSide.push(null)
      callback()
    },
  })
  b.broker.handle(brokerSide)
  return { peer: new RawMqtt(clientSide), writes }
}

async function connected(b: TestBroker, clientId: string): Promise<{ peer: RawMqtt; writes: Buffer[] }> {
  const client = recordedClient(b)
  const connack = await client.peer.connect({ clientId, cleanSession: true, keepAlive: 0 })
  assert.equal(connack.returnCode, 0)
  return client
}

/** The PUBLISH packets `n` of them, as one chunk: the broker reads them in one turn. */
function burst(n: number, qos: 0 | 1, fields: Partial<PublishPacket> = {}): Buffer {
  const packets: Buffer[] = []
  for (let i = 0; i < n; i++) {
    const payload = Buffer.from(`m${String(i).padStart(3, '0')}`)
    packets.push(encodePacket({ type: 'publish', topic: 'b/t', payload, qos, retain: false, dup: false, packetId: qos > 0 ? 1000 + i : 0, ...fields }, 4))
  }
  return Buffer.concat(packets)
}

describe('output batching', () => {
  it('sends the PUBLISHes one read routes to a subscriber in one write, not one per packet', async () => {
    const b = await startBroker()
    try {
      const sub = await connected(b, 'batch-sub')
      await sub.peer.subscribe('b/t', 0)
      const pub = await connected(b, 'batch-pub')
      const before = sub.writes.length
      pub.peer.write(burst(100, 0))
      await sub.peer.until(() => sub.peer.publishes().length === 100)
      const payloads = sub.peer.publishes().map((p) => p.payload.toString())
      assert.deepEqual(payloads, Array.from({ length: 100 }, (_, i) => `m${String(i).padStart(3, '0')}`))
      // 100 packets of 10 bytes: a write or two, where a write per packet made 100.
      const writes = sub.writes.length - before
      assert.ok(writes <= 2, `${writes} writes for 100 PUBLISHes`)
    } finally {
      await b.close()
    }
  })

  it('delivers a read of PUBLISHes fanned out to 10,000 subscribers in one write per subscriber, not one per message', async () => {
    const b = await startBroker()
    try {
      // 9,999 in-process subscribers and one client: each message is 10,000 deliveries, as much
      // as a connection's work budget per turn if a delivery counted as much as a packet.
      let inProcess = 0
      for (let i = 0; i < 9_999; i++) {
        await b.broker.subscribe('b/t', () => {
          inProcess++
        })
      }
      const sub = await connected(b, 'wide-sub')
      await sub.peer.subscribe('b/t', 0)
      const pub = await connected(b, 'wide-pub')
      const before = sub.writes.length
      pub.peer.write(burst(8, 0))
      await sub.peer.until(() => sub.peer.publishes().length === 8)
      assert.equal(inProcess, 8 * 9_999)
      const writes = sub.writes.length - before
      assert.ok(writes <= 2, `${writes} writes for 8 PUBLISHes of one read`)
    } finally {
      await b.close()
    }
  })

  it('acknowledges a read of QoS 1 PUBLISHes in one write, and forwards each with the subscriber\'s packet identifier and DUP 0', async () => {
    const b = await startBroker()
    try {
      const sub = await connected(b, 'batch-sub1')
      await sub.peer.subscribe('b/t', 1)
      const pub = await connected(b, 'batch-pub1')
      const pubBefore = pub.writes.length
      const subBefore = sub.writes.length
      // Sent as retries (DUP 1) under the publisher's identifiers 1000..1049.
      pub.peer.write(burst(50, 1, { dup: true }))
      await pub.peer.until(() => pub.peer.pending().filter((p) => p.type === 'puback').length === 50)
      const pubacks = pub.peer.pending().filter((p) => p.type === 'puback')
      assert.deepEqual(
        pubacks.map((p) => (p as { packetId: number }).packetId),
        Array.from({ length: 50 }, (_, i) => 1000 + i),
      )
      assert.ok(pub.writes.length - pubBefore <= 2, `${pub.writes.length - pubBefore} writes for 50 PUBACKs`)

      await sub.peer.until(() => sub.peer.publishes().length === 50)
      const publishes = sub.peer.publishes()
      // [MQTT-3.3.1-3] DUP is set only on the broker's own retries; the identifiers are the
      // subscriber's session's, not the publisher's [MQTT-2.3.1-2].
      assert.deepEqual(publishes.map((p) => p.dup), Array.from({ length: 50 }, () => false))
      assert.equal(new Set(publishes.map((p) => p.packetId)).size, 50)
      assert.ok(publishes.every((p) => p.packetId < 1000 && p.qos === 1), 'identifiers of the subscriber session')
      assert.ok(sub.writes.length - subBefore <= 2, `${sub.writes.length - subBefore} writes for 50 PUBLISHes`)
    } finally {
      await b.close()
    }
  })

  it('forwards a 3.1.1 PUBLISH byte for byte where QoS and RETAIN stay, and re-encodes it where they change', async () => {
    const b = await startBroker()
    try {
      const same = await connected(b, 'asis-q1')
      await same.peer.subscribe('r/t', 1)
      const lower = await connected(b, 'asis-q0')
      await lower.peer.subscribe('r/t', 0)
      const pub = await connected(b, 'asis-pub')
      const sent: PublishPacket = { type: 'publish', topic: 'r/t', payload: Buffer.from('kept'), qos: 1, retain: true, dup: false, packetId: 77 }
      pub.peer.send(sent)
      await pub.peer.next('puback')

      const q1 = await same.peer.next('publish')
      // [MQTT-3.3.1-9] RETAIN 0 to an established subscription.
      assert.deepEqual([q1.qos, q1.retain, q1.topic, q1.payload.toString()], [1, false, 'r/t', 'kept'])
      const q0 = await lower.peer.next('publish')
      // [MQTT-3.8.4-6] granted QoS 0: delivered at QoS 0, with no packet identifier.
      assert.deepEqual([q0.qos, q0.retain, q0.packetId, q0.payload.toString()], [0, false, 0, 'kept'])

      // A new subscriber gets the retained message with RETAIN 1 [MQTT-3.3.1-8], at the QoS it
      // was published, which is what the publisher sent, but for the packet identifier.
      const late = await connected(b, 'asis-late')
      const before = late.writes.length
      await late.peer.subscribe('r/t', 1)
      const retained = await late.peer.next('publish')
      assert.deepEqual([retained.qos, retained.retain, retained.dup, retained.payload.toString()], [1, true, false, 'kept'])
      const bytes = Buffer.concat(late.writes.slice(before))
      const expected = encodePacket({ ...sent, packetId: retained.packetId }, 4)
      assert.ok(bytes.includes(expected), 'the retained PUBLISH as the publisher sent it, with its own packet identifier')
    } finally {
      await b.close()
    }
  })

  it('forwards PUBLISHes that arrived in pieces (a header cut in its topic, a payload cut in two) as they were sent', async () => {
    const b = await startBroker()
    try {
      // Two subscribers: the first copies from the read buffer, the second from a view made once.
      const sub = await connected(b, 'split-sub')
      await sub.peer.subscribe('s/#', 1)
      const other = await connected(b, 'split-other')
      await other.peer.subscribe('s/#', 1)
      const pub = await connected(b, 'split-pub')
      const zero = encodePacket({ type: 'publish', topic: 's/zero', payload: Buffer.from('first message'), qos: 0, retain: false, dup: false, packetId: 0 }, 4)
      const one: PublishPacket = { type: 'publish', topic: 's/one', payload: Buffer.from('second message'), qos: 1, retain: false, dup: true, packetId: 9 }
      const all = Buffer.concat([zero, encodePacket(one, 4)])
      const before = sub.writes.length
      const otherBefore = other.writes.length
      for (const [from, to] of [[0, 5], [5, zero.length + 4], [zero.length + 4, all.length - 3], [all.length - 3, all.length]] as const) {
        pub.peer.write(all.subarray(from, to))
        await nextTurn()
      }
      await pub.peer.next('puback')
      for (const [client, from] of [[sub, before], [other, otherBefore]] as const) {
        const first = await client.peer.next('publish')
        const second = await client.peer.next('publish')
        assert.deepEqual([first.topic, first.qos, second.topic, second.qos, second.dup], ['s/zero', 0, 's/one', 1, false])
        const bytes = Buffer.concat(client.writes.slice(from))
        assert.ok(bytes.includes(zero), 'the QoS 0 PUBLISH byte for byte')
        assert.ok(bytes.includes(encodePacket({ ...one, dup: false, packetId: second.packetId }, 4)), 'the QoS 1 PUBLISH with the subscriber\'s identifier and DUP 0')
      }
    } finally {
      await b.close()
    }
  })
})
