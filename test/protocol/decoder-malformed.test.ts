/**
 * Raw-byte tests of the decoder's strict validation: one test per rule of the specification,
 * each asserting the DecodeError and the MQTT 5 reason code a broker would answer with
 * (0x81 malformed packet, 0x82 protocol error, 0x84 unsupported protocol version, 0x95 packet
 * too large). Then the positive side: zero-copy payloads and chunking. Then the topic rules
 * of section 4.7.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DecodeError, PacketDecoder, isSupportedProtocol } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { ConnectPacket, Packet, ProtocolVersion, PublishPacket } from '../../src/protocol/packets.js'
import { hasWildcard, isValidTopicFilter, isValidTopicName, topicMatches } from '../../src/protocol/topics.js'
import { packet, u16, varint } from '../helpers/index.js'

const MALFORMED = 0x81
const PROTOCOL_ERROR = 0x82
const UNSUPPORTED_PROTOCOL_VERSION = 0x84
const TOO_LARGE = 0x95

// ---------------------------------------------------------------------------------------------
// Byte builders (besides `packet`, `varint` and `u16`, shared with the connection tests)
// ---------------------------------------------------------------------------------------------

type Bytes = Buffer | number[]

function cat(...parts: Bytes[]): Buffer {
  return Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p))))
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]
}

/** A length-prefixed UTF-8 string. */
function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8')
  return cat(u16(b.length), b)
}

/** A length-prefixed binary field, as bytes. */
function lpBytes(bytes: number[]): number[] {
  return [...u16(bytes.length), ...bytes]
}

/** A length-prefixed string of raw (possibly ill-formed) bytes. */
function rawStr(bytes: number[]): Buffer {
  return cat(u16(bytes.length), bytes)
}

/** An MQTT 5 property block. */
function props(...entries: Bytes[]): Buffer {
  const b = cat(...entries)
  return cat(varint(b.length), b)
}

const NO_PROPS = [0x00]

interface ConnectOptions {
  name?: Buffer
  level?: number
  flags?: number
  keepAlive?: number
  properties?: Bytes
  clientId?: Buffer
  payload?: Bytes[]
}

/** A CONNECT; defaults to MQTT 3.1.1, clean session, client id "c". */
function connect(o: ConnectOptions = {}): Buffer {
  const level = o.level ?? 4
  return packet(
    0x10,
    o.name ?? str('MQTT'),
    [level, o.flags ?? 0x02],
    u16(o.keepAlive ?? 60),
    o.properties ?? (level === 5 ? NO_PROPS : []),
    o.clientId ?? str('c'),
    ...(o.payload ?? []),
  )
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers
// ---------------------------------------------------------------------------------------------

function decoderFor(version: ProtocolVersion, out: Packet[], maxPacketSize?: number): PacketDecoder {
  const decoder = new PacketDecoder((p) => out.push(p), maxPacketSize)
  decoder.protocolVersion = version
  return decoder
}

function decode(bytes: Buffer | Buffer[], version: ProtocolVersion = 4, maxPacketSize?: number): Packet[] {
  const out: Packet[] = []
  const decoder = decoderFor(version, out, maxPacketSize)
  for (const chunk of Array.isArray(bytes) ? bytes : [bytes]) decoder.push(chunk)
  return out
}

function decodeOne<P extends Packet>(bytes: Buffer, version: ProtocolVersion = 4): P {
  const out = decode(bytes, version)
  assert.equal(out.length, 1)
  return out[0] as P
}

/** Asserts that pushing `bytes` throws a DecodeError with `reasonCode`. */
function rejects(bytes: Buffer | Buffer[], reasonCode: number, version: ProtocolVersion = 4, message?: RegExp): void {
  assert.throws(
    () => decode(bytes, version),
    (err: unknown) => {
      assert.ok(err instanceof DecodeError, `expected a DecodeError, got ${String(err)}`)
      assert.equal(err.reasonCode, reasonCode, `reason code of "${err.message}"`)
      if (message) assert.match(err.message, message)
      return true
    },
  )
}

// ---------------------------------------------------------------------------------------------
// Fixed header
// ---------------------------------------------------------------------------------------------

test('reserved packet type 0 is malformed, refused on its first byte', () => {
  rejects(Buffer.from([0x00, 0x00]), MALFORMED, 4, /reserved packet type/)
  rejects(Buffer.from([0x00]), MALFORMED)
})

test('wrong fixed-header flags on each non-PUBLISH type are malformed [MQTT-2.2.2-2]', () => {
  const expected: Record<number, number> = { 1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0 }
  for (const [type, good] of Object.entries(expected).map(([t, f]) => [Number(t), f] as const)) {
    for (let flags = 0; flags < 16; flags++) {
      const first = (type << 4) | flags
      if (flags === good) {
        // The right flags pass the header check (the packet is then incomplete, so nothing comes out).
        assert.deepEqual(decode(Buffer.from([first]), 5), [])
      } else {
        rejects(Buffer.from([first]), MALFORMED, 5)
        rejects(Buffer.from([first, 0x00]), MALFORMED, 5, /flags/)
      }
    }
  }
})

test('PUBREL, SUBSCRIBE and UNSUBSCRIBE need flags 0010', () => {
  rejects(packet(0x60, u16(1)), MALFORMED)
  rejects(packet(0x80, u16(1), str('a'), [0]), MALFORMED)
  rejects(packet(0xa0, u16(1), str('a')), MALFORMED)
  assert.deepEqual(decode(packet(0x62, u16(1))), [{ type: 'pubrel', packetId: 1 }])
  assert.deepEqual(decode(packet(0x82, u16(1), str('a'), [0])), [{ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a', qos: 0 }] }])
  assert.deepEqual(decode(packet(0xa2, u16(1), str('a'))), [{ type: 'unsubscribe', packetId: 1, topicFilters: ['a'] }])
})

test('PUBLISH with QoS 3 is malformed [MQTT-3.3.1-4]', () => {
  rejects(packet(0x36, str('a'), u16(1)), MALFORMED, 4, /QoS 3/)
  rejects(Buffer.from([0x3e]), MALFORMED, 5)
})

test('PUBLISH with DUP at QoS 0 is malformed [MQTT-3.3.1-2]', () => {
  rejects(packet(0x38, str('a')), MALFORMED, 4, /DUP/)
  rejects(packet(0x39, str('a')), MALFORMED, 5)
  assert.equal(decodeOne<PublishPacket>(packet(0x3a, str('a'), u16(7))).dup, true)
})

test('packet identifier 0 is a protocol error on QoS 1/2 PUBLISH, SUBSCRIBE and UNSUBSCRIBE [MQTT-2.3.1-1]', () => {
  rejects(packet(0x32, str('a'), u16(0)), PROTOCOL_ERROR, 4, /identifier 0/)
  rejects(packet(0x34, str('a'), u16(0)), PROTOCOL_ERROR, 4)
  rejects(packet(0x82, u16(0), str('a'), [1]), PROTOCOL_ERROR)
  rejects(packet(0xa2, u16(0), str('a')), PROTOCOL_ERROR)
  rejects(packet(0x32, str('a'), u16(0), NO_PROPS), PROTOCOL_ERROR, 5)
  // QoS 0 carries no identifier at all: the bytes after the topic are payload.
  assert.deepEqual(decodeOne<PublishPacket>(packet(0x30, str('a'), u16(0))).payload, Buffer.from([0, 0]))
})

test('a remaining length with a fifth continuation byte is malformed', () => {
  rejects(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), MALFORMED, 4, /longer than 4 bytes/)
  // Also when the header arrives in pieces.
  rejects([Buffer.from([0x30, 0xff]), Buffer.from([0xff]), Buffer.from([0xff, 0xff])], MALFORMED)
  // Four bytes is the most there can be, and is fine: 2,097,152 bytes are awaited.
  assert.deepEqual(decode(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x01])), [])
})

test('a remaining length in more bytes than it needs is malformed: 5.0 [MQTT-1.5.5-1], 3.1.1 section 2.2.3', () => {
  for (const version of [3, 4, 5] as const) {
    // 0 in two, three and four bytes (a PINGREQ), in one chunk and with the header in pieces.
    for (const length of [[0x80, 0x00], [0x80, 0x80, 0x00], [0x80, 0x80, 0x80, 0x00]]) {
      rejects(Buffer.from([0xc0, ...length]), MALFORMED, version, /minimum number of bytes/)
      rejects(length.map((b, i) => Buffer.from(i === 0 ? [0xc0, b] : [b])), MALFORMED, version, /minimum number of bytes/)
    }
    // A PUBLISH of 5 bytes (topic "t", payload "x") with its length in two bytes, whole and
    // with the body still to come; the same bytes with a one-byte length are fine.
    const body = version === 5 ? [0x00, 0x01, 0x74, 0x00, 0x78] : [0x00, 0x01, 0x74, 0x78, 0x79]
    assert.equal(decode(Buffer.from([0x30, 0x05, ...body]), version).length, 1)
    rejects(Buffer.from([0x30, 0x85, 0x00, ...body]), MALFORMED, version, /minimum number of bytes/)
    rejects([Buffer.from([0x30, 0x85, 0x00, 0x00]), Buffer.from(body.slice(1))], MALFORMED, version, /minimum number of bytes/)
    // 127 in three bytes.
    rejects(Buffer.from([0x30, 0xff, 0x80, 0x00]), MALFORMED, version, /minimum number of bytes/)
  }
  // The smallest value of each length is minimal, and fine.
  assert.deepEqual(decode(Buffer.from([0xc0, 0x00])), [{ type: 'pingreq' }])
  const p128 = packet(0x30, str('t'), Buffer.alloc(125))
  assert.deepEqual([...p128.subarray(1, 3)], [0x80, 0x01])
  assert.equal(decode(p128).length, 1)
  assert.equal(decode([p128.subarray(0, 2), p128.subarray(2, 40), p128.subarray(40)]).length, 1)
})

test('a packet over maxPacketSize is refused as soon as its header is read', () => {
  // Remaining length 128: 1 + 2 + 128 = 131 bytes in all, over a limit of 130. No body is sent.
  assert.throws(() => decode(Buffer.from([0x30, 0x80, 0x01]), 4, 130), (e: unknown) => e instanceof DecodeError && e.reasonCode === TOO_LARGE)
  // Header split over two chunks: the first is fine, the second completes the header and throws.
  const out: Packet[] = []
  const decoder = decoderFor(4, out, 130)
  decoder.push(Buffer.from([0x30, 0x80]))
  assert.throws(() => decoder.push(Buffer.from([0x01])), (e: unknown) => e instanceof DecodeError && e.reasonCode === TOO_LARGE)
  // Exactly at the limit is accepted; the limit counts the fixed header too.
  const atLimit = packet(0x30, str('t'), Buffer.alloc(127 - 3))
  assert.equal(atLimit.length, 129)
  assert.equal(decode(atLimit, 4, 129).length, 1)
  assert.throws(() => decode(atLimit, 4, 128), (e: unknown) => e instanceof DecodeError && e.reasonCode === TOO_LARGE)
  // The limit can be changed between packets (after CONNECT, say).
  const decoder2 = decoderFor(4, out, 1000)
  decoder2.maxPacketSize = 10
  assert.throws(() => decoder2.push(Buffer.from([0x30, 0x0b])), (e: unknown) => e instanceof DecodeError && e.reasonCode === TOO_LARGE)
})

test('packets shorter than their contents, or with bytes left over, are malformed', () => {
  rejects(packet(0x30, u16(5), Buffer.from('ab')), MALFORMED, 4, /shorter/) // topic runs past the end
  rejects(packet(0x40, [0x00]), MALFORMED) // PUBACK with one byte of packet id
  rejects(packet(0x40, u16(1), [0x00]), MALFORMED, 4, /unexpected bytes/) // 3.1.1 PUBACK has no reason code
  rejects(packet(0xc0, [0x00]), MALFORMED) // PINGREQ with a body
  rejects(packet(0xe0, [0x00]), MALFORMED) // 3.1.1 DISCONNECT with a body
  rejects(packet(0x20, [0x02, 0x00]), MALFORMED, 4, /CONNACK flags/) // reserved CONNACK flag bits
})

test('AUTH before MQTT 5 is a protocol error', () => {
  rejects(packet(0xf0), PROTOCOL_ERROR, 4, /AUTH/)
})

// ---------------------------------------------------------------------------------------------
// Strings
// ---------------------------------------------------------------------------------------------

test('invalid UTF-8 in a topic is malformed [MQTT-1.5.3-1]', () => {
  rejects(packet(0x30, rawStr([0x61, 0xc3, 0x28])), MALFORMED, 4, /UTF-8/) // bad continuation byte
  rejects(packet(0x30, rawStr([0xc0, 0xaf])), MALFORMED) // overlong "/"
  rejects(packet(0x30, rawStr([0xed, 0xa0, 0x80])), MALFORMED) // a UTF-16 surrogate, U+D800
  rejects(packet(0x30, rawStr([0xf4, 0x90, 0x80, 0x80])), MALFORMED) // beyond U+10FFFF
  rejects(packet(0x30, rawStr([0xe2, 0x82])), MALFORMED) // truncated sequence
  // Well-formed multi-byte text is fine.
  assert.equal(decodeOne<PublishPacket>(packet(0x30, str('températures/🌡'))).topic, 'températures/🌡')
})

test('U+0000 in a topic is malformed [MQTT-1.5.3-2]', () => {
  rejects(packet(0x30, rawStr([0x61, 0x00, 0x62])), MALFORMED, 4, /U\+0000/)
  rejects(packet(0x30, rawStr([0xc0, 0x80])), MALFORMED) // the overlong form of U+0000 too
})

test('invalid UTF-8 in a client id is malformed', () => {
  rejects(connect({ clientId: rawStr([0xff]) }), MALFORMED, 4, /UTF-8/)
  rejects(connect({ clientId: rawStr([0x61, 0x00]) }), MALFORMED, 4, /U\+0000/)
})

test('invalid UTF-8 in a user name is malformed', () => {
  rejects(connect({ flags: 0x82, payload: [rawStr([0x80])] }), MALFORMED, 4, /UTF-8/)
  // A password is binary data: any bytes go.
  const ok = decodeOne<ConnectPacket>(connect({ flags: 0xc2, payload: [str('u'), rawStr([0xff, 0x00])] }))
  assert.deepEqual(ok.password, Buffer.from([0xff, 0x00]))
})

test('invalid UTF-8 in a will topic and in a topic filter is malformed', () => {
  rejects(connect({ flags: 0x06, payload: [rawStr([0xfe]), str('')] }), MALFORMED)
  rejects(packet(0x82, u16(1), rawStr([0xc3]), [0]), MALFORMED)
  rejects(packet(0xa2, u16(1), rawStr([0xc3])), MALFORMED)
})

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

test('CONNECT decodes every field', () => {
  const p = decodeOne<ConnectPacket>(connect({ flags: 0xee, keepAlive: 30, clientId: str('id'), payload: [str('w/t'), str('bye'), str('user'), str('pw')] }))
  assert.deepEqual(p, {
    type: 'connect',
    protocolName: 'MQTT',
    protocolVersion: 4,
    cleanSession: true,
    keepAlive: 30,
    clientId: 'id',
    will: { topic: 'w/t', payload: Buffer.from('bye'), qos: 1, retain: true },
    username: 'user',
    password: Buffer.from('pw'),
  })
})

test('CONNECT with the reserved flag bit 0 set is malformed [MQTT-3.1.2-3]', () => {
  rejects(connect({ flags: 0x03 }), MALFORMED, 4, /reserved CONNECT flag/)
  rejects(connect({ flags: 0x03, level: 5 }), MALFORMED)
})

test('will QoS or will retain without the will flag is malformed [MQTT-3.1.2-13] [MQTT-3.1.2-15]', () => {
  rejects(connect({ flags: 0x0a }), MALFORMED, 4, /without a will/) // will QoS 1
  rejects(connect({ flags: 0x12 }), MALFORMED) // will QoS 2
  rejects(connect({ flags: 0x22 }), MALFORMED) // will retain
})

test('will QoS 3 is malformed [MQTT-3.1.2-14]', () => {
  rejects(connect({ flags: 0x1e, payload: [str('t'), str('m')] }), MALFORMED, 4, /will QoS 3/)
})

test('3.1.1: a password without a user name is malformed [MQTT-3.1.2-22]; MQTT 5 allows it', () => {
  rejects(connect({ flags: 0x42, payload: [str('pw')] }), MALFORMED, 4, /password without user name/)
  rejects(connect({ name: str('MQIsdp'), level: 3, flags: 0x42, payload: [str('pw')] }), MALFORMED)
  const p = decodeOne<ConnectPacket>(connect({ level: 5, flags: 0x42, payload: [str('pw')] }))
  assert.deepEqual(p.password, Buffer.from('pw'))
  assert.equal(p.username, undefined)
})

test('an unknown protocol name is refused with 0x84 [MQTT-3.1.2-1]', () => {
  rejects(connect({ name: str('MQTX') }), UNSUPPORTED_PROTOCOL_VERSION, 4, /protocol name/)
  rejects(connect({ name: str('mqtt') }), UNSUPPORTED_PROTOCOL_VERSION)
})

test('an unsupported protocol level gives a CONNECT with that level, for CONNACK 0x01 [MQTT-3.1.2-2]', () => {
  for (const [name, level] of [['MQTT', 6], ['MQTT', 3], ['MQIsdp', 4], ['MQTT', 0x85], ['MQTT', 0x83], ['MQIsdp', 0x84]] as const) {
    const out: Packet[] = []
    const decoder = new PacketDecoder((p) => out.push(p))
    // The rest of the packet is in an unknown format, so it is not read (nor validated).
    decoder.push(connect({ name: str(name), level, flags: 0xff, payload: [[1, 2, 3]] }))
    assert.equal(out.length, 1)
    const p = out[0] as ConnectPacket
    assert.equal(p.type, 'connect')
    assert.equal(p.protocolName, name)
    assert.equal(p.protocolVersion, level)
    assert.equal(isSupportedProtocol(p.protocolName, p.protocolVersion), false)
    assert.equal(decoder.protocolVersion, 4, 'the decoder keeps its level')
  }
  assert.equal(isSupportedProtocol('MQIsdp', 3), true)
  assert.equal(isSupportedProtocol('MQTT', 4), true)
  assert.equal(isSupportedProtocol('MQTT', 5), true)
})

test('CONNECT sets the level later packets are decoded with', () => {
  const out: Packet[] = []
  const decoder = new PacketDecoder((p) => out.push(p))
  decoder.push(cat(connect({ level: 5 }), packet(0x40, u16(1), [0x10, 0x00])))
  assert.equal(decoder.protocolVersion, 5)
  assert.deepEqual(out[1], { type: 'puback', packetId: 1, reasonCode: 0x10, properties: {} })
  const v31 = new PacketDecoder(() => {})
  v31.push(connect({ name: str('MQIsdp'), level: 3 }))
  assert.equal(v31.protocolVersion, 3)
})

test('trailing bytes after a complete CONNECT are malformed', () => {
  rejects(connect({ payload: [[0x00]] }), MALFORMED, 4, /unexpected bytes at the end of connect/)
  rejects(connect({ flags: 0x82, payload: [str('u'), [0x00, 0x00]] }), MALFORMED)
  rejects(connect({ level: 5, payload: [[0x01]] }), MALFORMED)
})

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE / UNSUBSCRIBE
// ---------------------------------------------------------------------------------------------

test('SUBSCRIBE with no subscriptions is a protocol error [MQTT-3.8.3-3]', () => {
  rejects(packet(0x82, u16(1)), PROTOCOL_ERROR, 4, /without subscriptions/)
  rejects(packet(0x82, u16(1), NO_PROPS), PROTOCOL_ERROR, 5)
})

test('3.1.1 SUBSCRIBE: reserved bits in the requested QoS byte, or QoS 3, are malformed [MQTT-3-8.3-4]', () => {
  for (const options of [0x04, 0x08, 0x10, 0x40, 0x80, 0xfc]) rejects(packet(0x82, u16(1), str('a'), [options]), MALFORMED, 4, /reserved bits/)
  rejects(packet(0x82, u16(1), str('a'), [0x03]), MALFORMED, 4, /QoS 3/)
  rejects(packet(0x82, u16(1), str('a'), [0x01], str('b'), [0x03]), MALFORMED, 3)
})

test('MQTT 5 SUBSCRIBE options: reserved bits malformed [MQTT-3.8.3-5]; QoS 3, retain handling 3 protocol errors', () => {
  rejects(packet(0x82, u16(1), NO_PROPS, str('a'), [0x40]), MALFORMED, 5, /reserved subscription option/)
  rejects(packet(0x82, u16(1), NO_PROPS, str('a'), [0x80]), MALFORMED, 5)
  rejects(packet(0x82, u16(1), NO_PROPS, str('a'), [0x03]), PROTOCOL_ERROR, 5, /QoS 3/)
  rejects(packet(0x82, u16(1), NO_PROPS, str('a'), [0x30]), PROTOCOL_ERROR, 5, /retain handling/)
  assert.deepEqual(decode(packet(0x82, u16(9), NO_PROPS, str('a/#'), [0x2e]), 5), [{
    type: 'subscribe',
    packetId: 9,
    properties: {},
    subscriptions: [{ topicFilter: 'a/#', qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2 }],
  }])
})

test('a subscription without its options byte is malformed', () => {
  rejects(packet(0x82, u16(1), str('a')), MALFORMED)
})

test('UNSUBSCRIBE with no topic filters is a protocol error [MQTT-3.10.3-2]', () => {
  rejects(packet(0xa2, u16(1)), PROTOCOL_ERROR, 4, /without topic filters/)
  rejects(packet(0xa2, u16(1), NO_PROPS), PROTOCOL_ERROR, 5)
})

// ---------------------------------------------------------------------------------------------
// MQTT 5 properties
// ---------------------------------------------------------------------------------------------

/** A v5 PUBLISH QoS 0 on topic "t" with the given property block and payload "x". */
function publish5(block: Buffer): Buffer {
  return packet(0x30, str('t'), block, Buffer.from('x'))
}

test('an unknown property identifier is malformed', () => {
  rejects(publish5(props([0x04, 0x00])), MALFORMED, 5, /unknown property 0x4/)
  rejects(publish5(props([0x7f, 0x00])), MALFORMED, 5)
  rejects(connect({ level: 5, properties: props([0x00]) }), MALFORMED, 5)
})

test('a property on a packet it does not belong to is malformed (section 2.2.2.2)', () => {
  rejects(connect({ level: 5, properties: props([0x23], u16(1)) }), MALFORMED, 5, /topicAlias is not allowed on connect/)
  rejects(publish5(props([0x11], u32(10))), MALFORMED, 5, /sessionExpiryInterval/)
  rejects(packet(0x40, u16(1), [0x00], props([0x03], str('text/plain'))), MALFORMED, 5)
  // The will properties are their own place: Will Delay Interval is fine there, not on CONNECT.
  rejects(connect({ level: 5, properties: props([0x18], u32(5)) }), MALFORMED, 5)
  const will = decodeOne<ConnectPacket>(connect({ level: 5, flags: 0x06, payload: [props([0x18], u32(5)), str('t'), str('m')] }), 5)
  assert.deepEqual(will.will?.properties, { willDelayInterval: 5 })
})

test('a single-valued property given twice is a protocol error', () => {
  rejects(connect({ level: 5, properties: props([0x11], u32(1), [0x11], u32(2)) }), PROTOCOL_ERROR, 5, /more than once/)
  rejects(publish5(props([0x03], str('a'), [0x03], str('a'))), PROTOCOL_ERROR, 5)
  // Two subscription identifiers on a SUBSCRIBE (section 3.8.2.1.2).
  rejects(packet(0x82, u16(1), props([0x0b, 0x01, 0x0b, 0x02]), str('a'), [0]), PROTOCOL_ERROR, 5, /subscription identifier/)
})

test('repeatable properties: user properties in order, several subscription identifiers on PUBLISH', () => {
  const p = decodeOne<PublishPacket>(
    publish5(props([0x26], str('k'), str('1'), [0x0b, 0x05], [0x26], str('k'), str('2'), [0x0b, 0x80, 0x01], [0x26], str('a'), str(''))),
    5,
  )
  assert.deepEqual(p.properties, { userProperties: [['k', '1'], ['k', '2'], ['a', '']], subscriptionIdentifier: [5, 128] })
  assert.deepEqual(p.payload, Buffer.from('x'))
})

test('invalid UTF-8 in a string property is malformed', () => {
  rejects(publish5(props([0x03], rawStr([0xc3, 0x28]))), MALFORMED, 5, /UTF-8/)
  rejects(publish5(props([0x26], str('k'), rawStr([0xff]))), MALFORMED, 5)
  rejects(publish5(props([0x08], rawStr([0x00]))), MALFORMED, 5, /U\+0000/)
})

test('property values the specification forbids are protocol errors', () => {
  rejects(packet(0x82, u16(1), props([0x0b, 0x00]), str('a'), [0]), PROTOCOL_ERROR, 5, /subscriptionIdentifier is 0/)
  rejects(connect({ level: 5, properties: props([0x21], u16(0)) }), PROTOCOL_ERROR, 5, /receiveMaximum is 0/)
  rejects(connect({ level: 5, properties: props([0x27], u32(0)) }), PROTOCOL_ERROR, 5, /maximumPacketSize is 0/)
  rejects(connect({ level: 5, properties: props([0x17, 0x02]) }), PROTOCOL_ERROR, 5, /not 0 or 1/)
  rejects(connect({ level: 5, properties: props([0x19, 0x02]) }), PROTOCOL_ERROR, 5)
  rejects(packet(0x20, [0x00, 0x00], props([0x24, 0x02])), PROTOCOL_ERROR, 5)
  rejects(packet(0x20, [0x00, 0x00], props([0x25, 0x02])), PROTOCOL_ERROR, 5)
  // 0 and 1 are fine.
  const ok = decodeOne<ConnectPacket>(connect({ level: 5, properties: props([0x17, 0x00], [0x19, 0x01], [0x21], u16(1), [0x27], u32(1)) }), 5)
  assert.deepEqual(ok.properties, { requestProblemInformation: 0, requestResponseInformation: 1, receiveMaximum: 1, maximumPacketSize: 1 })
})

test('a property block longer than the packet, or one whose last property overruns it, is malformed', () => {
  rejects(publish5(Buffer.from([0x10, 0x01, 0x00])), MALFORMED, 5, /shorter/)
  // Block length 2, but Message Expiry Interval needs 5 bytes: it reads past the block's end.
  rejects(packet(0x30, str('t'), [0x02, 0x02], u32(1), Buffer.from('xyz')), MALFORMED, 5, /property length/)
  // A property length of five bytes.
  rejects(publish5(Buffer.from([0x80, 0x80, 0x80, 0x80, 0x01])), MALFORMED, 5, /longer than 4 bytes/)
})

test('a variable byte integer inside the packet in more bytes than it needs is malformed [MQTT-1.5.5-1]', () => {
  // Property Length 0 in two bytes.
  rejects(publish5(Buffer.from([0x80, 0x00])), MALFORMED, 5, /minimum number of bytes/)
  // Property Length 2 in four bytes.
  rejects(publish5(Buffer.from([0x82, 0x80, 0x80, 0x00, 0x01, 0x01])), MALFORMED, 5, /minimum number of bytes/)
  // Property identifier 0x01 (Payload Format Indicator) in two bytes.
  rejects(publish5(props([0x81, 0x00, 0x01])), MALFORMED, 5, /minimum number of bytes/)
  // Subscription Identifier 1 in two bytes, on SUBSCRIBE and on PUBLISH.
  rejects(packet(0x82, u16(1), props([0x0b, 0x81, 0x00]), str('a'), [0]), MALFORMED, 5, /minimum number of bytes/)
  rejects(publish5(props([0x0b, 0x81, 0x80, 0x00])), MALFORMED, 5, /minimum number of bytes/)
  // The same values minimally encoded are fine.
  assert.deepEqual(decodeOne<PublishPacket>(publish5(props([0x01, 0x01], [0x0b, 0x01])), 5).properties, { payloadFormatIndicator: 1, subscriptionIdentifier: [1] })
  assert.deepEqual(decodeOne<PublishPacket>(publish5(props([0x0b, 0x80, 0x01])), 5).properties, { subscriptionIdentifier: [128] })
})

test('a wildcard in a Response Topic is a protocol error: PUBLISH [MQTT-3.3.2-14], will properties [MQTT-4.7.0-1]', () => {
  for (const topic of ['+', '#', 'a/+', 'a/#', 'a/+/b', 'a+', 'b#']) {
    rejects(publish5(props([0x08], str(topic))), PROTOCOL_ERROR, 5, /Response Topic/)
    rejects(connect({ level: 5, flags: 0x06, payload: [props([0x08], str(topic)), str('t'), str('m')] }), PROTOCOL_ERROR, 5, /Response Topic/)
  }
  assert.deepEqual(decodeOne<PublishPacket>(publish5(props([0x08], str('replies/1'))), 5).properties, { responseTopic: 'replies/1' })
  const will = decodeOne<ConnectPacket>(connect({ level: 5, flags: 0x06, payload: [props([0x08], str('replies/1')), str('t'), str('m')] }), 5)
  assert.deepEqual(will.will?.properties, { responseTopic: 'replies/1' })
})

test('CONNECT with Authentication Data but no Authentication Method is a protocol error (section 3.1.2.11.10)', () => {
  const data = [0x16, ...lpBytes([1, 2, 3])]
  rejects(connect({ level: 5, properties: props(data) }), PROTOCOL_ERROR, 5, /Authentication Data without an Authentication Method/)
  rejects(connect({ level: 5, properties: props([0x11], u32(10), data) }), PROTOCOL_ERROR, 5, /Authentication Data/)
  // With a method, before or after the data, it is fine.
  for (const block of [props([0x15], str('SCRAM'), data), props(data, [0x15], str('SCRAM'))]) {
    const p = decodeOne<ConnectPacket>(connect({ level: 5, properties: block }), 5)
    assert.deepEqual(p.properties, { authenticationMethod: 'SCRAM', authenticationData: Buffer.from([1, 2, 3]) })
  }
})

test('MQTT 5 acknowledgements: short forms and reason codes', () => {
  assert.deepEqual(decode(packet(0x40, u16(3)), 5), [{ type: 'puback', packetId: 3 }])
  assert.deepEqual(decode(packet(0x50, u16(3), [0x80]), 5), [{ type: 'pubrec', packetId: 3, reasonCode: 0x80 }])
  assert.deepEqual(decode(packet(0x62, u16(3), [0x92], props([0x1f], str('gone'))), 5), [
    { type: 'pubrel', packetId: 3, reasonCode: 0x92, properties: { reasonString: 'gone' } },
  ])
  assert.deepEqual(decode(packet(0xe0), 5), [{ type: 'disconnect' }])
  assert.deepEqual(decode(packet(0xe0, [0x04]), 5), [{ type: 'disconnect', reasonCode: 4 }])
  assert.deepEqual(decode(packet(0xf0), 5), [{ type: 'auth', reasonCode: 0 }])
})

// Tables 3-4 to 3-7: the reason codes each acknowledgement may carry.
const PUBACK_PUBREC_CODES = [0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99]
const PUBREL_PUBCOMP_CODES = [0x00, 0x92]
const ACKS = [
  { first: 0x40, type: 'puback', codes: PUBACK_PUBREC_CODES },
  { first: 0x50, type: 'pubrec', codes: PUBACK_PUBREC_CODES },
  { first: 0x62, type: 'pubrel', codes: PUBREL_PUBCOMP_CODES },
  { first: 0x70, type: 'pubcomp', codes: PUBREL_PUBCOMP_CODES },
] as const

test('MQTT 5 acknowledgements with a reason code their table does not list are a protocol error [MQTT-3.4.2-1] [MQTT-3.5.2-1] [MQTT-3.6.2-1] [MQTT-3.7.2-1]', () => {
  for (const { first, type, codes } of ACKS) {
    for (let code = 0; code < 256; code++) {
      const valid = (codes as readonly number[]).includes(code)
      for (const bytes of [packet(first, u16(7), [code]), packet(first, u16(7), [code], NO_PROPS), packet(first, u16(7), [code], props([0x1f], str('why')))]) {
        if (valid) {
          const p = decodeOne<Packet>(bytes, 5)
          assert.equal(p.type, type)
          assert.equal((p as { reasonCode?: number }).reasonCode, code)
        } else {
          rejects(bytes, PROTOCOL_ERROR, 5, new RegExp(`reason code 0x${code.toString(16).padStart(2, '0')}.*${type.toUpperCase()}`))
        }
      }
    }
  }
})

test('3.1 and 3.1.1 acknowledgements are unaffected: two bytes of packet identifier, nothing more', () => {
  for (const version of [3, 4] as const) {
    for (const { first, type } of ACKS) {
      assert.deepEqual(decode(packet(first, u16(7)), version), [{ type, packetId: 7 }])
      // A third byte is not a reason code before MQTT 5: the packet is too long.
      rejects(packet(first, u16(7), [0x00]), MALFORMED, version, /unexpected bytes/)
      rejects(packet(first, u16(7), [0x92]), MALFORMED, version, /unexpected bytes/)
    }
  }
})

test('decoded packets carry no keys set to undefined', () => {
  const all = decode(cat(
    packet(0x90, u16(1), [0x00, 0x80]),
    packet(0xb0, u16(1)),
    packet(0xa2, u16(1), str('a')),
    packet(0x82, u16(1), str('a'), [1]),
    packet(0x40, u16(1)),
    packet(0xe0),
  ), 4)
  assert.equal(all.length, 6)
  for (const p of all) for (const [k, v] of Object.entries(p)) assert.notEqual(v, undefined, `${p.type}.${k}`)
})

// ---------------------------------------------------------------------------------------------
// Buffers and chunks
// ---------------------------------------------------------------------------------------------

test('a PUBLISH payload decoded from one chunk is a view of that chunk, not a copy', () => {
  for (const version of [4, 5] as const) {
    const payload = Buffer.from('hello, zero copy')
    const bytes = encodePacket({ type: 'publish', topic: 'a/b', payload, qos: 1, retain: false, dup: false, packetId: 5 }, version)
    // Put the packet inside a larger chunk, at an offset, to be sure.
    const chunk = cat([0xc0, 0x00], bytes, [0xd0, 0x00])
    const out = decode(chunk, version)
    assert.equal(out.length, 3)
    const p = out[1] as PublishPacket
    assert.deepEqual(p.payload, payload)
    assert.equal(p.payload.buffer, chunk.buffer, 'same ArrayBuffer')
    assert.equal(p.payload.byteOffset, chunk.byteOffset + chunk.length - 2 - payload.length)
    // Proof by mutation: writing into the chunk shows through the payload.
    chunk[chunk.length - 3] = 0x21
    assert.equal(p.payload.toString(), 'hello, zero cop!')
  }
})

test('several packets in one chunk all come out, in order', () => {
  const packets: Packet[] = [
    { type: 'publish', topic: 'a', payload: Buffer.from('1'), qos: 0, retain: false, dup: false, packetId: 0 },
    { type: 'pingreq' },
    { type: 'publish', topic: 'b', payload: Buffer.from('2'), qos: 2, retain: true, dup: true, packetId: 65535 },
    { type: 'puback', packetId: 9 },
    { type: 'subscribe', packetId: 2, subscriptions: [{ topicFilter: 'x/+', qos: 1 }] },
    { type: 'disconnect' },
  ]
  // A 3.1.1 PUBLISH also says where it began: the bytes before its payload, in the chunk read.
  const chunk = Buffer.concat(packets.map((p) => encodePacket(p, 4)))
  const expected = packets.map((p) => (p.type === 'publish' ? { ...p, bytesBeforePayload: p.qos === 0 ? 5 : 7, wire: chunk } : p))
  assert.deepEqual(decode(chunk), expected)
})

test('a 3.1.1 PUBLISH is found whole before its payload, as received; an MQTT 5 one is not marked', () => {
  const sent: PublishPacket = { type: 'publish', topic: 'sensors/été/1', payload: Buffer.from('21.5'), qos: 1, retain: true, dup: true, packetId: 300 }
  const bytes = encodePacket(sent, 4)
  const chunk = cat([0xc0, 0x00], bytes)
  const p = decode(chunk)[1] as PublishPacket
  const before = p.bytesBeforePayload as number
  assert.deepEqual(Buffer.from(p.payload.buffer, p.payload.byteOffset - before, before + p.payload.length), bytes)
  assert.equal(p.wire, chunk, 'the buffer it was read into')
  const v5 = decode(encodePacket(sent, 5), 5)[0] as PublishPacket
  assert.equal(v5.bytesBeforePayload, 0)
  assert.equal(v5.wire, undefined)
})

test('a repeated topic name decodes as itself; one differing only in its last byte, or carrying U+0000, does not pass for it', () => {
  const publish = (topic: Buffer): Buffer => cat([0x30, 2 + topic.length + 1, topic.length >> 8, topic.length & 0xff], topic, [0x31])
  const topics = (...names: Buffer[]): string[] => decode(Buffer.concat(names.map(publish))).map((p) => (p as PublishPacket).topic)
  assert.deepEqual(topics(Buffer.from('a/b'), Buffer.from('a/b'), Buffer.from('a/c'), Buffer.from('a/c')), ['a/b', 'a/b', 'a/c', 'a/c'])
  assert.deepEqual(topics(Buffer.from('é/1'), Buffer.from('é/1'), Buffer.from('e/1')), ['é/1', 'é/1', 'e/1'])
  assert.throws(() => topics(Buffer.from('a/b'), Buffer.from('a/\0')), /U\+0000/)
  // Latin-1 bytes that are not UTF-8 are refused even after an ASCII topic of the same length.
  assert.throws(() => topics(Buffer.from('a/b'), Buffer.from([0x61, 0x2f, 0xe9])), /UTF-8/)
})

test('a packet split over many chunks comes out once, whole', () => {
  const payload = Buffer.alloc(70000, 7) // a three-byte remaining length
  payload[0] = 1
  payload[payload.length - 1] = 9
  const bytes = encodePacket({ type: 'publish', topic: 'big', payload, qos: 1, retain: false, dup: false, packetId: 1 }, 4)
  for (const size of [1, 2, 3, 1000, 65536]) {
    const chunks: Buffer[] = []
    for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size))
    const out: Packet[] = []
    const decoder = decoderFor(4, out)
    for (let i = 0; i < chunks.length; i++) {
      decoder.push(chunks[i] as Buffer)
      assert.equal(out.length, i === chunks.length - 1 ? 1 : 0)
    }
    assert.deepEqual((out[0] as PublishPacket).payload, payload)
  }
})

test('a packet whose tail shares a chunk with the next packet', () => {
  const a = encodePacket({ type: 'publish', topic: 'a', payload: Buffer.alloc(300, 1), qos: 0, retain: false, dup: false, packetId: 0 }, 4)
  const b = encodePacket({ type: 'pingreq' }, 4)
  const c = encodePacket({ type: 'publish', topic: 'c', payload: Buffer.alloc(200, 3), qos: 0, retain: false, dup: false, packetId: 0 }, 4)
  const stream = cat(a, b, c)
  const out = decode([stream.subarray(0, 100), stream.subarray(100, a.length + 1), stream.subarray(a.length + 1, a.length + 50), stream.subarray(a.length + 50)])
  assert.deepEqual(out.map((p) => p.type), ['publish', 'pingreq', 'publish'])
  assert.deepEqual((out[2] as PublishPacket).payload, Buffer.alloc(200, 3))
})

test('an empty chunk changes nothing', () => {
  const out: Packet[] = []
  const decoder = decoderFor(4, out)
  decoder.push(Buffer.alloc(0))
  decoder.push(Buffer.from([0xc0]))
  decoder.push(Buffer.alloc(0))
  decoder.push(Buffer.from([0x00]))
  assert.deepEqual(out, [{ type: 'pingreq' }])
})

// ---------------------------------------------------------------------------------------------
// Topic names and filters (MQTT section 4.7)
// ---------------------------------------------------------------------------------------------

test('topic filters: wildcards only as whole levels, # only last [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1]', () => {
  const valid = [
    'sport/tennis/player1/#', 'sport/#', '#', '+', '+/tennis/#', 'sport/+/player1', '/+', '+/+', 'sport/+',
    '+/+/+', '$SYS/#', '$SYS/monitor/+', 'a//b', '/', '//', ' ', 'sport/tennis/player1', '$share/g/a/+',
    '+/#', '/#', 'ümlaut/+',
  ]
  const invalid = [
    '', 'sport/tennis#', 'sport/tennis/#/ranking', 'sport+', '#/', '#/a', 'a/#b', 'a/b#', '##', '+a', 'a+', 'a/+b',
    'a/b+/c', '++', '+#', 'a/#/', 'sport/+player1',
  ]
  for (const f of valid) assert.equal(isValidTopicFilter(f), true, `valid filter ${JSON.stringify(f)}`)
  for (const f of invalid) assert.equal(isValidTopicFilter(f), false, `invalid filter ${JSON.stringify(f)}`)
})

test('topic names: not empty, no wildcards [MQTT-4.7.3-1] [MQTT-3.3.2-2]', () => {
  for (const t of ['sport/tennis/player1', '/', 'a//b', '$SYS/broker/uptime', ' ', '/finance', 'sport/', 'ACCOUNTS', 'ü/€']) {
    assert.equal(isValidTopicName(t), true, `valid name ${JSON.stringify(t)}`)
  }
  for (const t of ['', '#', '+', 'sport/+', 'sport/#', 'a+b', 'a#']) assert.equal(isValidTopicName(t), false, `invalid name ${JSON.stringify(t)}`)
  assert.equal(hasWildcard('a/+/b'), true)
  assert.equal(hasWildcard('a/#'), true)
  assert.equal(hasWildcard('a/b'), false)
})

test('topic names and filters: no U+0000 [MQTT-4.7.3-2], no lone surrogate, at most 65,535 UTF-8 bytes [MQTT-4.7.3-3]', () => {
  for (const check of [isValidTopicName, isValidTopicFilter]) {
    assert.equal(check('a\u0000b'), false)
    assert.equal(check('\u0000'), false)
    assert.equal(check('a/\ud800'), false) // lone high surrogate
    assert.equal(check('\udc00/a'), false) // lone low surrogate
    assert.equal(check('\udc00\ud800'), false) // reversed pair
    assert.equal(check('a/\ud83c\udf21'), true) // U+1F321 as a pair
    assert.equal(check('x'.repeat(65535)), true)
    assert.equal(check('x'.repeat(65536)), false)
    assert.equal(check('€'.repeat(21845)), true) // 3 bytes each: 65,535
    assert.equal(check('€'.repeat(21845) + 'x'), false)
    assert.equal(check('\ud83c\udf21'.repeat(16383) + 'xxx'), true) // 4 bytes per pair: 65,535
    assert.equal(check('\ud83c\udf21'.repeat(16384)), false)
  }
})

test('topic matching: the examples of section 4.7 and the $-topic rule [MQTT-4.7.2-1]', () => {
  const cases: Array<[filter: string, topic: string, matches: boolean]> = [
    // 4.7.1.2 multi-level wildcard
    ['sport/tennis/player1/#', 'sport/tennis/player1', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/ranking', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon', true],
    ['sport/#', 'sport', true],
    ['#', 'sport/tennis', true],
    ['#', '/', true],
    ['sport/tennis/#', 'sport/tennis2', false],
    ['sport/tennis/#', 'sport', false],
    // 4.7.1.3 single-level wildcard
    ['sport/tennis/+', 'sport/tennis/player1', true],
    ['sport/tennis/+', 'sport/tennis/player2', true],
    ['sport/tennis/+', 'sport/tennis/player1/ranking', false],
    ['sport/+', 'sport', false],
    ['sport/+', 'sport/', true],
    ['+/+', '/finance', true],
    ['/+', '/finance', true],
    ['+', '/finance', false],
    ['+', 'finance', true],
    ['a/+/c', 'a//c', true],
    ['+/tennis/#', 'sport/tennis/player1', true],
    ['+/tennis/#', 'sport/tennis', true],
    ['+/tennis/#', 'sport/golf', false],
    // 4.7.2 topics beginning with $
    ['#', '$SYS/monitor/Clients', false],
    ['#', '$SYS', false],
    ['+', '$SYS', false],
    ['+/monitor/Clients', '$SYS/monitor/Clients', false],
    ['+/#', '$SYS/x', false],
    ['$SYS/#', '$SYS/monitor/Clients', true],
    ['$SYS/monitor/+', '$SYS/monitor/Clients', true],
    ['$SYS/#', '$SYS', true],
    ['#', 'a/$SYS', true],
    ['a/+', 'a/$b', true],
    // 4.7.3 case sensitive, levels compared exactly
    ['ACCOUNTS', 'Accounts', false],
    ['ACCOUNTS', 'ACCOUNTS', true],
    ['sport/tennis', 'sport/tennis/', false],
    ['sport/tennis/', 'sport/tennis', false],
    ['a/b', 'a/b', true],
    [' ', ' ', true],
  ]
  for (const [filter, topic, expected] of cases) {
    assert.equal(topicMatches(filter, topic), expected, `${JSON.stringify(filter)} vs ${JSON.stringify(topic)}`)
  }
})

test("a bridge's level (0x84 for MQTT, 0x83 for MQIsdp: Mosquitto's try_private) decodes as 3.1.1 or 3.1 with the bridge mark", () => {
  for (const [name, level, version] of [['MQTT', 0x84, 4], ['MQIsdp', 0x83, 3]] as const) {
    const out: Packet[] = []
    const decoder = new PacketDecoder((p) => out.push(p))
    decoder.push(connect({ name: str(name), level, clientId: str('bridge') }))
    const p = out[0] as ConnectPacket
    assert.equal(p.protocolVersion, version)
    assert.equal(p.bridge, true)
    assert.equal(p.clientId, 'bridge')
  }
})
