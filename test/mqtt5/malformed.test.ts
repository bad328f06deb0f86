/**
 * Malformed packets and protocol errors over real sockets, byte by byte: what the broker answers
 * (DISCONNECT or CONNACK with a reason code for MQTT 5, nothing for 3.1.1) and that it then closes
 * the connection [MQTT-4.13.1-1] (3.1.1: [MQTT-4.8.0-1]).
 *
 * Where a test must show that the broker sent nothing, it uses a fence: a PINGREQ answered by
 * PINGRESP on the same connection proves that every packet written before it was handled.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { ConnackPacket, Packet } from '../../src/protocol/packets.js'
import {
  connectAccepted,
  connect as connect311,
  expectClosedSilently,
  hex,
  lp,
  packet,
  PINGREQ,
  PINGRESP,
  rawConnect,
  type RawV5,
  TEST_TIMEOUT,
  u16,
  withBroker,
  withV5Broker,
} from '../helpers/index.js'

const MALFORMED = 0x81
const PROTOCOL_ERROR = 0x82
const TOPIC_NAME_INVALID = 0x90

/** A property block: its length (one byte, these are short), then the properties as given. */
function props(...entries: number[][]): number[] {
  const bytes = entries.flat()
  assert.ok(bytes.length < 128)
  return [bytes.length, ...bytes]
}

/** PINGREQ, then waits for its PINGRESP: everything the broker had to send before it has arrived. */
async function fence(raw: RawV5): Promise<void> {
  raw.socket.write(PINGREQ)
  await raw.take('pingresp')
}

/** Every packet `raw` received, as type (and reason code where there is one), for messages. */
function summary(packets: Packet[]): string {
  return packets.map((p) => `${p.type}${'reasonCode' in p && p.reasonCode !== undefined ? ` ${hex(p.reasonCode)}` : ''}`).join(', ')
}

/**
 * Expects the broker's only answer to be a CONNACK with `code` and session present 0
 * [MQTT-3.2.2-6], followed by the close [MQTT-3.2.2-7].
 */
async function expectConnackThenClose(raw: RawV5, code: number): Promise<ConnackPacket> {
  const connack = await raw.next('connack')
  assert.equal(hex(connack.returnCode), hex(code), 'CONNACK reason code')
  assert.equal(connack.sessionPresent, false, 'session present')
  await raw.waitClosed()
  assert.equal(raw.all.length, 1, `only a CONNACK, got: ${summary(raw.all)}`)
  return connack
}

// ---------------------------------------------------------------------------------------------
// Acknowledgements: each type has its own table of reason codes
// ---------------------------------------------------------------------------------------------

describe('an acknowledgement with a reason code its table does not list: DISCONNECT 0x82, then close', () => {
  test('PUBACK 0x92 (a PUBREL/PUBCOMP code) for a QoS 1 delivery [MQTT-3.4.2-1]', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'sub' })
      await sub.subscribe([{ topicFilter: 't', qos: 1 }])
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('t', 'one', 0)
      pub.publish('t', 'two', 0)
      // A code of the table (0x80, Unspecified error) is taken as it is.
      const first = await sub.takePublish('one')
      sub.socket.write(packet(0x40, u16(first.packetId), [0x80]))
      const second = await sub.takePublish('two')
      await fence(sub)
      sub.socket.write(packet(0x40, u16(second.packetId), [0x92]))
      await sub.expectDisconnect(PROTOCOL_ERROR)
    })
  })

  test('PUBREC 0x92 for a QoS 2 delivery [MQTT-3.5.2-1]', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'sub' })
      await sub.subscribe([{ topicFilter: 't', qos: 2 }])
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('t', 'm', 0)
      const delivery = await sub.takePublish('m')
      sub.socket.write(packet(0x50, u16(delivery.packetId), [0x92]))
      await sub.expectDisconnect(PROTOCOL_ERROR)
      assert.equal(sub.all.filter((p) => p.type === 'pubrel').length, 0, 'no PUBREL')
    })
  })

  test('PUBCOMP 0x10 (a PUBACK/PUBREC code) after the broker\'s PUBREL [MQTT-3.7.2-1]', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'sub' })
      await sub.subscribe([{ topicFilter: 't', qos: 2 }])
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('t', 'm', 0)
      const delivery = await sub.takePublish('m')
      sub.socket.write(packet(0x50, u16(delivery.packetId), [0x00]))
      const pubrel = await sub.take('pubrel')
      assert.equal(pubrel.packetId, delivery.packetId)
      sub.socket.write(packet(0x70, u16(delivery.packetId), [0x10]))
      await sub.expectDisconnect(PROTOCOL_ERROR)
    })
  })

  test('PUBREL 0x10 from a QoS 2 publisher; PUBREL 0x92 is a code of the table and gets its PUBCOMP [MQTT-3.6.2-1]', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('t', 'm', 2, { packetId: 5 })
      assert.equal((await pub.take('pubrec')).packetId, 5)
      pub.socket.write(packet(0x62, u16(5), [0x92]))
      assert.equal((await pub.take('pubcomp')).packetId, 5)
      pub.publish('t', 'n', 2, { packetId: 6 })
      assert.equal((await pub.take('pubrec')).packetId, 6)
      pub.socket.write(packet(0x62, u16(6), [0x10]))
      await pub.expectDisconnect(PROTOCOL_ERROR)
      assert.equal(pub.all.filter((p) => p.type === 'pubcomp').length, 1, `one PUBCOMP only, got: ${summary(pub.all)}`)
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Variable byte integers in more bytes than they need
// ---------------------------------------------------------------------------------------------

describe('a variable byte integer in more bytes than it needs is malformed [MQTT-1.5.5-1]', () => {
  test('MQTT 5: a Remaining Length of 0 in two bytes (PINGREQ 0xC0 0x80 0x00) gets DISCONNECT 0x81, not PINGRESP', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'c' })
      await fence(raw)
      raw.socket.write(Buffer.from([0xc0, 0x80, 0x00]))
      await raw.expectDisconnect(MALFORMED)
      assert.deepEqual(raw.inbox, [], `nothing else: ${summary(raw.inbox)}`)
    })
  })

  test('MQTT 3.1.1: the same PINGREQ closes the connection with nothing sent [MQTT-4.8.0-1]', { timeout: TEST_TIMEOUT }, async () => {
    await withBroker({}, async (b) => {
      const raw = await b.raw()
      await connectAccepted(raw, connect311({ clientId: 'c' }))
      raw.write(PINGREQ)
      await raw.waitBytes(4 + 2)
      assert.deepEqual(raw.received.subarray(4), PINGRESP)
      raw.write([0xc0, 0x80, 0x00])
      await raw.waitClosed()
      assert.equal(raw.received.length, 6, `the broker sent ${raw.received.subarray(6).toString('hex')} before closing`)
    })
  })

  test('a Property Length of 0 in two bytes on PUBLISH: DISCONNECT 0x81, nothing delivered', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'sub' })
      await sub.subscribe([{ topicFilter: 't', qos: 0 }])
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.socket.write(packet(0x30, lp('t'), [0x80, 0x00], Buffer.from('bad')))
      await pub.expectDisconnect(MALFORMED)
      await fence(sub)
      assert.deepEqual(sub.publishes(), [], 'nothing reached the subscriber')
    })
  })

  test('a property identifier in two bytes (0x81 0x00 for Payload Format Indicator): DISCONNECT 0x81', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'c' })
      raw.socket.write(packet(0x30, lp('t'), props([0x81, 0x00, 0x01]), Buffer.from('x')))
      await raw.expectDisconnect(MALFORMED)
    })
  })

  test('a Subscription Identifier of 1 in two bytes on SUBSCRIBE: DISCONNECT 0x81, no SUBACK', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw } = await b.rawConnect({ clientId: 'c' })
      raw.socket.write(packet(0x82, u16(1), props([0x0b, 0x81, 0x00]), lp('a'), [0x00]))
      await raw.expectDisconnect(MALFORMED)
      assert.equal(raw.all.filter((p) => p.type === 'suback').length, 0, 'no SUBACK')
    })
  })
})

// ---------------------------------------------------------------------------------------------
// Response Topic and authentication properties
// ---------------------------------------------------------------------------------------------

describe('a wildcard in a Response Topic', () => {
  test('on PUBLISH: DISCONNECT 0x82 and the message goes nowhere [MQTT-3.3.2-14]', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const { raw: sub } = await b.rawConnect({ clientId: 'sub' })
      await sub.subscribe([{ topicFilter: 'requests/#', qos: 1 }])
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      pub.publish('requests/a', 'fine', 1, { packetId: 1, properties: { responseTopic: 'replies/a' } })
      assert.equal((await sub.takePublish('fine')).properties?.responseTopic, 'replies/a')
      assert.equal((await pub.take('puback')).packetId, 1)
      pub.publish('requests/b', 'wild', 1, { packetId: 2, properties: { responseTopic: 'replies/+' } })
      await pub.expectDisconnect(PROTOCOL_ERROR)
      assert.equal(pub.all.filter((p) => p.type === 'puback').length, 1, 'no PUBACK for the second PUBLISH')
      await fence(sub)
      assert.deepEqual(sub.publishes().map((p) => p.payload.toString()), ['fine'], 'only the first message was delivered')
    })
  })

  test('in the will properties: CONNACK 0x82, then close [MQTT-4.7.0-1]', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const raw = await b.raw()
      raw.send({
        type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanSession: true, keepAlive: 0, clientId: 'w',
        will: { topic: 'status/w', payload: Buffer.from('gone'), qos: 0, retain: false, properties: { responseTopic: 'replies/#' } },
      })
      const connack = await expectConnackThenClose(raw, PROTOCOL_ERROR)
      assert.match(connack.properties?.reasonString ?? '', /Response Topic/)
    })
  })
})

test('CONNECT with Authentication Data but no Authentication Method: CONNACK 0x82, then close (section 3.1.2.11.10)', { timeout: TEST_TIMEOUT }, async () => {
  await withV5Broker({}, async (b) => {
    const raw = await b.raw()
    raw.send({ type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanSession: true, keepAlive: 0, clientId: 'a', properties: { authenticationData: Buffer.from('secret') } })
    await expectConnackThenClose(raw, PROTOCOL_ERROR)
  })
})

// ---------------------------------------------------------------------------------------------
// Malformed CONNECT: CONNACK where the packet was read far enough to know it is MQTT 5
// ---------------------------------------------------------------------------------------------

describe('a malformed CONNECT (section 4.13.1)', () => {
  test('MQTT 5 with the reserved flag set: CONNACK 0x81, then close [MQTT-3.1.2-3]', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const raw = await b.raw()
      raw.socket.write(rawConnect({ level: 5, flags: 0x03, payload: [[0x00], lp('r')] }))
      await expectConnackThenClose(raw, MALFORMED)
    })
  })

  test('MQTT 5 with a property given twice (Session Expiry Interval): CONNACK 0x82, then close (section 3.1.2.11.2)', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const raw = await b.raw()
      raw.socket.write(rawConnect({ level: 5, payload: [props([0x11, 0, 0, 0, 1], [0x11, 0, 0, 0, 2]), lp('d')] }))
      await expectConnackThenClose(raw, PROTOCOL_ERROR)
    })
  })

  test('MQTT 5 with a wildcard in the will topic: CONNACK 0x90, then close [MQTT-3.1.3-11] [MQTT-4.7.0-1]', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const raw = await b.raw()
      raw.socket.write(rawConnect({ level: 5, flags: 0x06, payload: [[0x00], lp('w'), [0x00], lp('status/+'), lp('gone')] }))
      await expectConnackThenClose(raw, TOPIC_NAME_INVALID)
    })
  })

  test('MQTT 5 cut right after its protocol level: CONNACK 0x81, then close', { timeout: TEST_TIMEOUT }, async () => {
    await withV5Broker({}, async (b) => {
      const raw = await b.raw()
      raw.socket.write(packet(0x10, lp('MQTT'), [0x05]))
      await expectConnackThenClose(raw, MALFORMED)
    })
  })

  test('MQTT 3.1.1 with the reserved flag set: closed with nothing sent [MQTT-3.1.4-1] [MQTT-3.1.2-3]', { timeout: TEST_TIMEOUT }, async () => {
    await withBroker({}, async (b) => {
      await expectClosedSilently(await b.raw(), rawConnect({ level: 4, flags: 0x03, payload: [lp('r')] }), '3.1.1 CONNECT with the reserved flag')
    })
  })

  test('cut before its protocol level: closed with nothing sent, whatever follows', { timeout: TEST_TIMEOUT }, async () => {
    await withBroker({}, async (b) => {
      // The packet ends after the protocol name: the level (and so the version) is never read,
      // so the broker cannot know which CONNACK the client would understand.
      await expectClosedSilently(await b.raw(), packet(0x10, lp('MQTT')), 'CONNECT without a protocol level')
      await expectClosedSilently(await b.raw(), packet(0x10, [0x00]), 'CONNECT cut inside the protocol name')
    })
  })

  test('an MQTT 5 CONNECT whose Remaining Length is not minimal: closed with nothing sent (its level is never read)', { timeout: TEST_TIMEOUT }, async () => {
    await withBroker({}, async (b) => {
      const good = rawConnect({ level: 5, payload: [[0x00], lp('m')] })
      const body = good.subarray(2)
      assert.ok(body.length < 128)
      const bad = Buffer.concat([Buffer.from([0x10, 0x80 | body.length, 0x00]), body])
      await expectClosedSilently(await b.raw(), bad, 'CONNECT with a two-byte Remaining Length')
    })
  })
})
