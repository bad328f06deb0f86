// Self-check of the load generator's hand-written MQTT bytes against `mqtt-packet`, and of the
// Framer against arbitrary chunking. run.ts runs it first (it takes milliseconds): numbers from
// a generator that sends malformed packets would be meaningless. Also runnable alone:
//   node --import tsx bench/wire-check.ts

import assert from 'node:assert/strict'
import mqttPacket from 'mqtt-packet'
import {
  encodeConnect, encodePuback, encodePublish, encodeSubscribe, DISCONNECT, Framer,
} from './mqtt-wire.js'
import { encodeConnect5, encodePublish5, encodeSubscribe5, payloadOffset5, readPublish5 } from './mqtt5-wire.js'

export function checkWire(): void {
  const gen = (p: mqttPacket.Packet): Buffer => mqttPacket.generate(p)
  const gen5 = (p: mqttPacket.Packet): Buffer => mqttPacket.generate(p, { protocolVersion: 5 })

  assert.deepEqual(encodeConnect('bench-client', 60), gen({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 60, clientId: 'bench-client',
  }))
  assert.deepEqual(encodeConnect('bench-client', 60, false), gen({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, keepalive: 60, clientId: 'bench-client',
  }))
  assert.deepEqual(encodeSubscribe(1, 'bench/x/+', 1), gen({
    cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'bench/x/+', qos: 1 }],
  }))
  // 200 bytes of payload makes the remaining length take two bytes.
  for (const size of [0, 64, 200]) {
    const payload = Buffer.alloc(size, 0x61)
    const q0 = encodePublish('bench/t', payload, 0)
    assert.deepEqual(q0.bytes, gen({ cmd: 'publish', topic: 'bench/t', payload, qos: 0, dup: false, retain: false }))
    assert.equal(q0.payloadOffset, q0.bytes.length - size)
    const q1 = encodePublish('bench/t', payload, 1)
    assert.deepEqual(q1.bytes, gen({ cmd: 'publish', topic: 'bench/t', payload, qos: 1, messageId: 1, dup: false, retain: false }))
    assert.equal(q1.bytes.readUInt16BE(q1.idOffset), 1)
    assert.equal(q1.payloadOffset, q1.bytes.length - size)
  }
  assert.deepEqual(encodeSubscribe(1, ['a/+', 'b/#'], 0), gen({
    cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/+', qos: 0 }, { topic: 'b/#', qos: 0 }],
  }))

  // MQTT 5 (the `mqtt5` scenario).
  assert.deepEqual(encodeConnect5('bench-client', 60, 10), gen5({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 60, clientId: 'bench-client',
    properties: { topicAliasMaximum: 10 },
  }))
  assert.deepEqual(encodeSubscribe5(1, ['bench/x'], 0, 300), gen5({
    cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'bench/x', qos: 0, nl: false, rap: false, rh: 0 }],
    properties: { subscriptionIdentifier: 300 },
  }))
  const p5 = Buffer.alloc(64, 0x61)
  const pub5 = encodePublish5('bench/t', p5, { messageExpirySeconds: 300, userProperties: [['bench', 'culex'], ['pair', '7']] })
  assert.deepEqual(pub5.bytes, gen5({
    cmd: 'publish', topic: 'bench/t', payload: p5, qos: 0, dup: false, retain: false,
    properties: { messageExpiryInterval: 300, userProperties: { bench: 'culex', pair: '7' } },
  }))
  assert.equal(pub5.payloadOffset, pub5.bytes.length - 64)
  // What a broker sends back: an aliased delivery (empty topic) with a subscription identifier.
  const back = gen5({
    cmd: 'publish', topic: '', payload: p5, qos: 0, dup: false, retain: false,
    properties: { messageExpiryInterval: 299, topicAlias: 3, subscriptionIdentifier: 300, userProperties: { bench: 'culex', pair: '7' } },
  })
  const bodyAt = 2 // after the first byte and a one-byte remaining length
  const seen = readPublish5(back, bodyAt, 0)
  assert.deepEqual(
    { aliased: seen.aliased, topicAlias: seen.topicAlias, ids: seen.subscriptionIds, users: seen.userProperties, expiry: seen.messageExpiry },
    { aliased: true, topicAlias: 3, ids: [300], users: 2, expiry: 299 },
  )
  assert.equal(seen.payload, back.length - 64)
  assert.equal(payloadOffset5(back, bodyAt, 0), back.length - 64)

  const ack = Buffer.alloc(4)
  encodePuback(513, ack, 0)
  assert.deepEqual(ack, gen({ cmd: 'puback', messageId: 513 }))
  assert.deepEqual(DISCONNECT, gen({ cmd: 'disconnect' }))

  // The same stream cut at every possible pair of points must frame identically.
  const stream = Buffer.concat([
    encodePublish('a', Buffer.alloc(300, 1), 1).bytes,
    DISCONNECT,
    encodePublish('bench/t', Buffer.alloc(5, 2), 0).bytes,
  ])
  const frame = (cuts: number[]): string[] => {
    const seen: string[] = []
    const f = new Framer()
    f.wantBody = () => true
    f.onPacket = (first, buf, start, len) => { seen.push(`${first}:${buf.subarray(start, start + len).toString('hex')}`) }
    let at = 0
    for (const cut of [...cuts, stream.length]) {
      f.push(stream.subarray(at, cut))
      at = cut
    }
    return seen
  }
  const whole = frame([])
  assert.equal(whole.length, 3)
  for (let i = 1; i < stream.length; i += 7) {
    for (let j = i; j < stream.length; j += 13) assert.deepEqual(frame([i, j]), whole)
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  checkWire()
  process.stdout.write('wire check passed\n')
}
