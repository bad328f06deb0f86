/**
 * PUBLISH over real sockets: the acknowledgement flows of QoS 0, 1 and 2 in both directions,
 * QoS downgrade, exactly-once delivery of QoS 2, malformed PUBLISH packets, authorizePublish,
 * ordering and fan-out. Normative references are to MQTT 3.1.1 (OASIS, 29 October 2014).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { IClientOptions } from 'mqtt'
import type { Client, Message } from '../../src/hooks/types.js'
import type { QoS } from '../../src/protocol/packets.js'
import { fixedHeader, Inbox, nextTurn, publish, RawMqtt, startBroker, str, u16, type TestBroker } from '../helpers/index.js'

/** A broker that never answers must fail the test, not hang the run. */
const TEST_TIMEOUT = 10_000

const QOS: QoS[] = [0, 1, 2]

const VERSIONS: Array<{ name: string; opts: IClientOptions }> = [
  { name: 'MQTT 3.1.1', opts: { protocolVersion: 4 } },
  { name: 'MQTT 3.1', opts: { protocolVersion: 3, protocolId: 'MQIsdp' } },
]

/** A subscriber connected with the `mqtt` client, subscribed to `filter` at `qos`, and its inbox. */
async function subscriber(b: TestBroker, clientId: string, filter: string, qos: QoS, opts: IClientOptions = {}): Promise<Inbox> {
  const client = await b.connect({ clientId, ...opts })
  const inbox = new Inbox(client)
  const [grant] = await client.subscribeAsync(filter, { qos })
  assert.equal(grant?.qos, qos, `subscription of ${clientId} to ${filter} granted`)
  return inbox
}

describe('PUBLISH from a client to the broker', () => {
  test('QoS 0 is not acknowledged and is delivered', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.4-1] the expected response to a QoS 0 PUBLISH is none; [MQTT-4.3.1-1] at most once
    const b = await startBroker()
    try {
      const inbox = await subscriber(b, 'sub', 'p/0', 0)
      const pub = await RawMqtt.open(b, 'raw-pub')
      pub.publish('p/0', 'zero', 0)
      const got = await inbox.waitFor('zero')
      assert.equal(got.topic, 'p/0')
      assert.equal(got.qos, 0)
      // The message has gone all the way through; nothing came back to the publisher.
      pub.send({ type: 'pingreq' })
      await pub.take('pingresp')
      assert.deepEqual(pub.pending(), [])
    } finally {
      await b.close()
    }
  })

  test('QoS 1 is answered with PUBACK carrying the packet identifier', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-4.3.2-2] the receiver of a QoS 1 PUBLISH responds with a PUBACK with its packet identifier
    const b = await startBroker()
    try {
      const inbox = await subscriber(b, 'sub', 'p/1', 1)
      const pub = await RawMqtt.open(b, 'raw-pub')
      pub.publish('p/1', 'one', 1, 4242)
      const ack = await pub.take('puback')
      assert.equal(ack.packetId, 4242)
      assert.equal((await inbox.waitFor('one')).qos, 1)
    } finally {
      await b.close()
    }
  })

  test('QoS 2 is answered with PUBREC, and PUBREL with PUBCOMP, each carrying the packet identifier', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-4.3.3-2] the receiver responds with PUBREC, then answers PUBREL with PUBCOMP, same identifier
    const b = await startBroker()
    try {
      const inbox = await subscriber(b, 'sub', 'p/2', 2)
      const pub = await RawMqtt.open(b, 'raw-pub')
      pub.publish('p/2', 'two', 2, 777)
      const rec = await pub.take('pubrec')
      assert.equal(rec.packetId, 777)
      pub.send({ type: 'pubrel', packetId: 777 })
      const comp = await pub.take('pubcomp')
      assert.equal(comp.packetId, 777)
      assert.equal((await inbox.waitFor('two')).qos, 2)
    } finally {
      await b.close()
    }
  })

  test('mqtt client publishes at QoS 0, 1 and 2 complete (PUBACK / PUBCOMP received)', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.4-1] each QoS level gets its expected response; the client's promise settles only on it
    const b = await startBroker()
    try {
      const pub = await b.connect({ clientId: 'pub' })
      for (const qos of QOS) {
        const packet = await pub.publishAsync('p/any', `m${qos}`, { qos })
        if (qos > 0) assert.ok(packet !== undefined && packet.messageId !== undefined, `QoS ${qos} publish was acknowledged`)
      }
    } finally {
      await b.close()
    }
  })
})

describe('PUBLISH from the broker to a client', () => {
  test('QoS 1: PUBLISH with a non-zero packet identifier; the next waits for PUBACK when maxInflight is 1', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-2.3.1-1] QoS > 0 PUBLISH carries a non-zero identifier; [MQTT-4.3.2-1] the sender treats
    // it as unacknowledged until the PUBACK
    const b = await startBroker({ limits: { maxInflight: 1 } })
    try {
      const sub = await RawMqtt.open(b, 'raw-sub')
      sub.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'd/1', qos: 1 }] })
      assert.deepEqual((await sub.take('suback')).reasonCodes, [1])
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('d/1', 'first', { qos: 1 })
      await pub.publishAsync('d/1', 'second', { qos: 1 })
      const first = await sub.takePublish('first')
      assert.equal(first.qos, 1)
      assert.equal(first.dup, false)
      assert.notEqual(first.packetId, 0)
      // Both PUBLISHes were routed before their PUBACKs; the fence shows what reached 'sub' by then.
      await sub.ping()
      assert.equal(sub.pending().filter((p) => p.type === 'publish').length, 0, 'second message sent before the first was acknowledged')
      sub.send({ type: 'puback', packetId: first.packetId })
      const second = await sub.takePublish('second')
      assert.equal(second.qos, 1)
      assert.notEqual(second.packetId, 0)
    } finally {
      await b.close()
    }
  })

  test('QoS 2: PUBREC is answered with PUBREL; PUBCOMP completes the flow', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-4.3.3-1] the sender sends PUBREL with the identifier when it receives PUBREC and treats
    // the message as unacknowledged until PUBCOMP
    const b = await startBroker({ limits: { maxInflight: 1 } })
    try {
      const sub = await RawMqtt.open(b, 'raw-sub')
      sub.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'd/2', qos: 2 }] })
      assert.deepEqual((await sub.take('suback')).reasonCodes, [2])
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('d/2', 'first', { qos: 2 })
      await pub.publishAsync('d/2', 'second', { qos: 2 })
      const first = await sub.takePublish('first')
      assert.equal(first.qos, 2)
      assert.equal(first.dup, false)
      assert.notEqual(first.packetId, 0)
      sub.send({ type: 'pubrec', packetId: first.packetId })
      const rel = await sub.take('pubrel')
      assert.equal(rel.packetId, first.packetId)
      // The broker has handled the PUBREC (and sent what it would on it) once the fence returns.
      await sub.ping()
      assert.equal(sub.pending().filter((p) => p.type === 'publish').length, 0, 'second message sent before PUBCOMP')
      sub.send({ type: 'pubcomp', packetId: first.packetId })
      const second = await sub.takePublish('second')
      assert.equal(second.qos, 2)
    } finally {
      await b.close()
    }
  })

  for (const { name, opts } of VERSIONS) {
    test(`${name}: delivered at min(publish QoS, subscription QoS) for all nine combinations`, { timeout: TEST_TIMEOUT }, async () => {
      // [MQTT-3.8.4-6] messages sent in response to a subscription have the minimum of the
      // published QoS and the granted QoS (downgrade: 2→1, 2→0, 1→0)
      const b = await startBroker()
      try {
        const inboxes = await Promise.all(QOS.map((s) => subscriber(b, `sub${s}`, 'min/q', s, opts)))
        const pub = await b.connect({ clientId: 'pub', ...opts })
        for (const p of QOS) await pub.publishAsync('min/q', `pub${p}`, { qos: p })
        for (const s of QOS) {
          const inbox = inboxes[s] as Inbox
          for (const p of QOS) {
            const got = await inbox.waitFor(`pub${p}`)
            assert.equal(got.qos, Math.min(p, s), `published at ${p}, subscribed at ${s}`)
          }
        }
      } finally {
        await b.close()
      }
    })
  }
})

describe('QoS 2 exactly once', () => {
  test('a duplicate PUBLISH with the same identifier before PUBREL is not delivered again; after PUBCOMP the identifier carries a new message', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-4.3.3-2] until PUBREL, a PUBLISH with the same identifier is acknowledged with PUBREC
    // and MUST NOT cause duplicate delivery onward; after PUBCOMP it is a new publication
    const b = await startBroker()
    try {
      const inbox = await subscriber(b, 'sub', 'x/2', 2)
      const pub = await RawMqtt.open(b, 'raw-pub')
      pub.publish('x/2', 'once', 2, 7)
      assert.equal((await pub.take('pubrec')).packetId, 7)
      pub.publish('x/2', 'once', 2, 7, { dup: true })
      assert.equal((await pub.take('pubrec')).packetId, 7, 'the duplicate is acknowledged with PUBREC')
      pub.send({ type: 'pubrel', packetId: 7 })
      assert.equal((await pub.take('pubcomp')).packetId, 7)
      pub.publish('x/2', 'again', 2, 7)
      assert.equal((await pub.take('pubrec')).packetId, 7)
      pub.send({ type: 'pubrel', packetId: 7 })
      assert.equal((await pub.take('pubcomp')).packetId, 7)
      await inbox.waitFor('again')
      assert.deepEqual(
        inbox.messages.map((m) => m.payload),
        ['once', 'again'],
      )
    } finally {
      await b.close()
    }
  })
})

describe('malformed PUBLISH closes the connection', () => {
  const payload = [...Buffer.from('malformed')]
  const valid = fixedHeader(0x30, [...str('m/t'), ...Buffer.from('fine')])
  const cases: Array<{ name: string; rule: string; bytes: Buffer }> = [
    // [MQTT-2.3.1-1] a QoS > 0 PUBLISH must carry a non-zero packet identifier
    { name: 'packet identifier 0 on QoS 1', rule: 'MQTT-2.3.1-1', bytes: fixedHeader(0x32, [...str('m/t'), ...u16(0), ...payload]) },
    { name: 'packet identifier 0 on QoS 2', rule: 'MQTT-2.3.1-1', bytes: fixedHeader(0x34, [...str('m/t'), ...u16(0), ...payload]) },
    // [MQTT-3.3.1-4] both QoS bits set: close the network connection
    { name: 'QoS 3', rule: 'MQTT-3.3.1-4', bytes: fixedHeader(0x36, [...str('m/t'), ...u16(1), ...payload]) },
    // [MQTT-3.3.2-2] [MQTT-4.7.1-1] the topic name must not contain wildcards
    { name: "'+' in the topic", rule: 'MQTT-3.3.2-2', bytes: fixedHeader(0x30, [...str('m/+'), ...payload]) },
    { name: "'#' in the topic", rule: 'MQTT-3.3.2-2', bytes: fixedHeader(0x30, [...str('m/#'), ...payload]) },
    { name: "'#' alone as the topic (QoS 1)", rule: 'MQTT-3.3.2-2', bytes: fixedHeader(0x32, [...str('#'), ...u16(1), ...payload]) },
    // [MQTT-4.7.3-1] topic names are at least one character long
    { name: 'empty topic', rule: 'MQTT-4.7.3-1', bytes: fixedHeader(0x30, [...str(''), ...payload]) },
    // A publisher's repeated topic is checked once: a new topic after it is checked again.
    { name: "'+' after PUBLISHes to a valid topic", rule: 'MQTT-3.3.2-2', bytes: Buffer.concat([valid, valid, fixedHeader(0x30, [...str('m/+'), ...payload])]) },
    { name: 'empty topic after a PUBLISH to a valid topic', rule: 'MQTT-4.7.3-1', bytes: Buffer.concat([valid, fixedHeader(0x30, [...str(''), ...payload])]) },
    // [MQTT-3.3.1-2] DUP must be 0 for QoS 0
    { name: 'DUP set on QoS 0', rule: 'MQTT-3.3.1-2', bytes: fixedHeader(0x38, [...str('m/t'), ...payload]) },
  ]
  for (const c of cases) {
    test(`${c.name} [${c.rule}]: closed, not delivered, and the broker serves the next client`, { timeout: TEST_TIMEOUT }, async () => {
      // [MQTT-4.8.0-1] a protocol violation closes the network connection
      const b = await startBroker()
      try {
        const inbox = await subscriber(b, 'watcher', 'm/#', 2)
        const bad = await RawMqtt.open(b, 'bad')
        bad.write(c.bytes)
        await bad.waitClosed()
        // Another client is still served: connect, publish, and the subscriber gets it.
        const next = await RawMqtt.open(b, 'next')
        // QoS 2 so it is emitted by the mqtt client no earlier than a wrongly routed QoS 2 message.
        next.publish('m/t', 'after', 2, 1)
        await next.take('pubrec')
        await inbox.waitFor('after')
        assert.deepEqual(inbox.withPayload('malformed'), [], 'the malformed message was routed')
      } finally {
        await b.close()
      }
    })
  }
})

describe('authorizePublish', () => {
  for (const mode of ['sync', 'async'] as const) {
    test(`${mode}: a refused QoS 0 is dropped, QoS 1 PUBACKed and QoS 2 PUBREC/PUBCOMPed but none delivered`, { timeout: TEST_TIMEOUT }, async () => {
      // [MQTT-3.3.5-2] a server that does not authorize a PUBLISH must either acknowledge it
      // positively per the QoS rules or close; the issue chooses: acknowledge and drop
      const seen: Array<{ client: string; topic: string; qos: QoS }> = []
      const decide = (client: Client, message: Message): boolean => {
        seen.push({ client: client.id, topic: message.topic, qos: message.qos })
        return !message.topic.startsWith('deny/')
      }
      const b = await startBroker({
        authorizePublish: mode === 'sync' ? decide : async (client, message) => {
          await nextTurn()
          return decide(client, message)
        },
      })
      try {
        const inbox = await subscriber(b, 'sub', '#', 2)
        const pub = await RawMqtt.open(b, 'raw-pub')
        pub.publish('deny/0', 'refused0', 0)
        pub.publish('deny/1', 'refused1', 1, 11)
        assert.equal((await pub.take('puback')).packetId, 11, 'refused QoS 1 is still PUBACKed')
        pub.publish('deny/2', 'refused2', 2, 12)
        assert.equal((await pub.take('pubrec')).packetId, 12, 'refused QoS 2 is still PUBRECed')
        pub.send({ type: 'pubrel', packetId: 12 })
        assert.equal((await pub.take('pubcomp')).packetId, 12, 'refused QoS 2 is still PUBCOMPed')
        // An allowed message after the refused ones: once it arrives, the refused would have too.
        // QoS 2, like the slowest refused one: the mqtt client emits QoS 2 messages on PUBREL.
        pub.publish('allow/x', 'allowed', 2, 13)
        await pub.take('pubrec')
        pub.send({ type: 'pubrel', packetId: 13 })
        await pub.take('pubcomp')
        const got = await inbox.waitFor('allowed')
        assert.equal(got.topic, 'allow/x')
        assert.deepEqual(inbox.messages.map((m) => m.payload), ['allowed'])
        assert.deepEqual(seen, [
          { client: 'raw-pub', topic: 'deny/0', qos: 0 },
          { client: 'raw-pub', topic: 'deny/1', qos: 1 },
          { client: 'raw-pub', topic: 'deny/2', qos: 2 },
          { client: 'raw-pub', topic: 'allow/x', qos: 2 },
        ])
      } finally {
        await b.close()
      }
    })
  }

  test('the mqtt client sees refused QoS 1 and 2 publishes complete normally', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.5-2] positive acknowledgement of an unauthorized PUBLISH
    const b = await startBroker({ authorizePublish: async (_c, m) => m.topic !== 'deny' })
    try {
      const inbox = await subscriber(b, 'sub', '#', 2)
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('deny', 'r1', { qos: 1 })
      await pub.publishAsync('deny', 'r2', { qos: 2 })
      await pub.publishAsync('ok', 'fine', { qos: 2 })
      await inbox.waitFor('fine')
      assert.deepEqual(inbox.messages.map((m) => m.payload), ['fine'])
      assert.ok(pub.connected, 'the publisher stays connected')
    } finally {
      await b.close()
    }
  })
})

describe('ordering', () => {
  for (const qos of QOS) {
    test(`200 QoS ${qos} messages on one topic from one publisher arrive in order`, { timeout: TEST_TIMEOUT }, async () => {
      // [MQTT-4.6.0-6] each topic is an Ordered Topic by default: messages from one client on one
      // topic reach each subscriber in the order they were published
      const b = await startBroker()
      try {
        const inbox = await subscriber(b, 'sub', 'seq/t', qos)
        const pub = await b.connect({ clientId: 'pub' })
        const sent: Array<Promise<unknown>> = []
        for (let i = 0; i < 200; i++) sent.push(pub.publishAsync('seq/t', String(i), { qos }))
        await Promise.all(sent)
        await inbox.waitCount(200, 8000)
        assert.deepEqual(
          inbox.messages.map((m) => Number(m.payload)),
          Array.from({ length: 200 }, (_, i) => i),
        )
        for (const m of inbox.messages) assert.equal(m.qos, qos)
      } finally {
        await b.close()
      }
    })
  }

  test('200 QoS 1 messages from a raw publisher (pipelined in one write) arrive in order', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-4.6.0-6] ordered topic, even when all PUBLISH packets arrive in one TCP segment
    const b = await startBroker()
    try {
      const inbox = await subscriber(b, 'sub', 'seq/raw', 1)
      const pub = await RawMqtt.open(b, 'raw-pub')
      const bytes = Buffer.concat(
        Array.from({ length: 200 }, (_, i) =>
          publish('seq/raw', String(i), 1, i + 1),
        ),
      )
      pub.write(bytes)
      await inbox.waitCount(200, 8000)
      assert.deepEqual(
        inbox.messages.map((m) => Number(m.payload)),
        Array.from({ length: 200 }, (_, i) => i),
      )
      const acks: number[] = []
      for (let i = 0; i < 200; i++) acks.push((await pub.take('puback')).packetId)
      // [MQTT-4.3.2-2] every one is acknowledged with its own identifier
      assert.deepEqual(acks.sort((x, y) => x - y), Array.from({ length: 200 }, (_, i) => i + 1))
    } finally {
      await b.close()
    }
  })
})

describe('fan-out', () => {
  test('20 subscribers on one topic each receive a QoS 1 message exactly once', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.5-1] each matching subscriber gets the message; [MQTT-4.3.2-1] QoS 1, identifier set
    const b = await startBroker()
    try {
      const inboxes = await Promise.all(Array.from({ length: 20 }, (_, i) => subscriber(b, `fan${i}`, 'fan/out', 1)))
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('fan/out', 'hello', { qos: 1 })
      await pub.publishAsync('fan/out', 'end', { qos: 1 })
      for (const inbox of inboxes) {
        await inbox.waitFor('end')
        assert.equal(inbox.withPayload('hello').length, 1)
        assert.equal(inbox.withPayload('hello')[0]?.qos, 1)
      }
    } finally {
      await b.close()
    }
  })
})
