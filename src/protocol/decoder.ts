import { isUtf8 } from 'node:buffer'
import type {
  AckPacket,
  ConnectPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PublishPacket,
  QoS,
  Subscription,
  WillMessage,
} from './packets.js'
import { PROPERTY_BY_ID, type PropertyPlace } from './properties.js'
import { ACK_REASON_CODES, ReasonCode } from './reason-codes.js'
import { hasWildcard } from './topics.js'

/**
 * A packet that breaks the specification. The connection closes on it; `reasonCode` is what an
 * MQTT 5 client is told in DISCONNECT first (0x81 malformed, 0x82 protocol error, 0x95 too large).
 */
export class DecodeError extends Error {
  constructor(
    message: string,
    readonly reasonCode: number = ReasonCode.MalformedPacket,
  ) {
    super(message)
    this.name = 'DecodeError'
  }
}

/**
 * Checks the first byte of a fixed header as soon as it arrives, so garbage is refused before its
 * body is buffered: type 0 is reserved; the flags of every type but PUBLISH are fixed
 * [MQTT-2.2.2-1] [MQTT-2.2.2-2] (5.0: [MQTT-2.1.3-1]); a PUBLISH must not have QoS 3
 * [MQTT-3.3.1-4] nor DUP at QoS 0 [MQTT-3.3.1-2].
 */
function checkFirstByte(first: number): void {
  const type = first >> 4
  const flags = first & 0x0f
  if (type === 3) {
    if ((flags & 6) === 6) throw new DecodeError('PUBLISH with QoS 3')
    if ((flags & 0x0e) === 8) throw new DecodeError('PUBLISH with DUP set at QoS 0')
    return
  }
  if (type === 0) throw new DecodeError('reserved packet type 0')
  // PUBREL, SUBSCRIBE and UNSUBSCRIBE carry flags 0010, all others 0000.
  const expectedFlags = type === 6 || type === 8 || type === 10 ? 2 : 0
  if (flags !== expectedFlags) throw new DecodeError(`invalid fixed header flags on ${PACKET_NAMES[type] as string}`)
}

/**
 * Whether a CONNECT's protocol name and level are a pair this decoder speaks: "MQIsdp" 3 (MQTT 3.1),
 * "MQTT" 4 (3.1.1) or "MQTT" 5. A CONNECT for which this is false carries only its name and level;
 * the broker answers it with CONNACK 0x01 (0x84 on MQTT 5) and closes [MQTT-3.1.2-2].
 */
export function isSupportedProtocol(protocolName: string, protocolVersion: number): boolean {
  return protocolName === 'MQTT' ? protocolVersion === 4 || protocolVersion === 5 : protocolName === 'MQIsdp' && protocolVersion === 3
}

/** Identifier of the Response Topic property (section 2.2.2.2). */
const RESPONSE_TOPIC = 0x08

const PACKET_NAMES = [
  '', 'connect', 'connack', 'publish', 'puback', 'pubrec', 'pubrel', 'pubcomp',
  'subscribe', 'suback', 'unsubscribe', 'unsuback', 'pingreq', 'pingresp', 'disconnect', 'auth',
] as const

/**
 * A variable byte integer must use the minimum number of bytes: 5.0 [MQTT-1.5.5-1]; 3.1.1 gives
 * the Remaining Length the same ranges per size (section 2.2.3, Table 2.4). It is minimal exactly
 * when it is one byte long or its last (most significant) byte is not 0.
 */
const NOT_MINIMAL = 'variable byte integer not in the minimum number of bytes'

const EMPTY = Buffer.alloc(0)

/** Topic names up to this length are remembered for the next PUBLISH of the same connection. */
const MAX_REMEMBERED_TOPIC = 256

/** A bounds-checked cursor over one packet's variable header and payload. */
class Cursor {
  buf: Buffer = EMPTY
  /** Where the variable header begins. */
  start = 0
  pos = 0
  end = 0

  reset(buf: Buffer, start: number, end: number): void {
    this.buf = buf
    this.start = start
    this.pos = start
    this.end = end
  }

  get remaining(): number {
    return this.end - this.pos
  }

  need(n: number): void {
    if (this.pos + n > this.end) throw new DecodeError('packet shorter than its contents')
  }

  byte(): number {
    this.need(1)
    return this.buf[this.pos++] as number
  }

  u16(): number {
    this.need(2)
    const v = this.buf.readUInt16BE(this.pos)
    this.pos += 2
    return v
  }

  u32(): number {
    this.need(4)
    const v = this.buf.readUInt32BE(this.pos)
    this.pos += 4
    return v
  }

  varint(): number {
    let value = 0
    let multiplier = 1
    for (let i = 0; i < 4; i++) {
      const b = this.byte()
      value += (b & 0x7f) * multiplier
      if ((b & 0x80) === 0) {
        // [MQTT-1.5.5-1] a last byte of 0 after a continuation byte adds nothing: not minimal
        if (b === 0 && i > 0) throw new DecodeError(NOT_MINIMAL)
        return value
      }
      multiplier *= 128
    }
    throw new DecodeError('variable byte integer longer than 4 bytes')
  }

  binary(): Buffer {
    const len = this.u16()
    this.need(len)
    const out = this.buf.subarray(this.pos, this.pos + len)
    this.pos += len
    return out
  }

  /**
   * A UTF-8 encoded string: well-formed (no overlong forms, no surrogates) and free of U+0000,
   * else the packet is malformed. 3.1.1: [MQTT-1.5.3-1] [MQTT-1.5.3-2]; 5.0: [MQTT-1.5.4-1] [MQTT-1.5.4-2].
   */
  string(): string {
    const len = this.u16()
    this.need(len)
    const start = this.pos
    const end = start + len
    this.pos = end
    const bytes = this.buf.subarray(start, end)
    if (!isUtf8(bytes)) throw new DecodeError('invalid UTF-8 in a string')
    if (bytes.indexOf(0) !== -1) throw new DecodeError('U+0000 in a string')
    return this.buf.toString('utf8', start, end)
  }
}

/**
 * Turns a byte stream into packets. Feed it chunks with `push`; it calls `onPacket` for each
 * complete packet, in order, and throws `DecodeError` on the first invalid one. Payloads are
 * slices of the incoming chunk, never copies, unless a packet spans several chunks.
 *
 * `onPacket` returning false halts decoding after that packet: the rest stays as bytes (not as
 * decoded packets, so a large chunk cannot turn into a large pile of objects) until `resume()`.
 */
export class PacketDecoder {
  /** Set from the CONNECT packet; decides how later packets are read. */
  protocolVersion: ProtocolVersion = 4
  /** The largest packet accepted (fixed header included); larger ones throw before being buffered. */
  maxPacketSize: number

  /** The first bytes of a packet whose length is not known yet (at most 4). */
  private head: Buffer | null = null
  /** A packet of known length arriving in pieces; grows with what has arrived, never ahead of it. */
  private partial: Buffer | null = null
  private partialTotal = 0
  private partialFilled = 0
  /** Bytes not decoded while halted, in order. */
  private held: Buffer[] = []
  private halted = false
  private readonly cursor = new Cursor()
  /** The last ASCII topic name a PUBLISH carried ('' at first). */
  private lastTopic = ''

  /** Packets and bytes decoded, by packet type number (shared with the broker's counters when given). */
  private readonly packetCounts: Float64Array
  private readonly byteCounts: Float64Array

  constructor(
    private readonly onPacket: (packet: Packet) => unknown,
    maxPacketSize = 268435455 + 5,
    counts?: { readonly packetsReceived: Float64Array; readonly bytesReceived: Float64Array },
  ) {
    this.maxPacketSize = maxPacketSize
    this.packetCounts = counts?.packetsReceived ?? new Float64Array(16)
    this.byteCounts = counts?.bytesReceived ?? new Float64Array(16)
  }

  push(chunk: Buffer): void {
    if (this.halted) this.held.push(chunk)
    else this.consume(chunk)
    // The cursor let go of the chunk: an idle connection must not keep its last read alive.
    this.cursor.buf = EMPTY
  }

  /** Decodes what arrived while halted, until done or halted again. */
  resume(): void {
    this.halted = false
    while (!this.halted && this.held.length > 0) this.consume(this.held.shift() as Buffer)
    this.cursor.buf = EMPTY
  }

  private consume(chunk: Buffer): void {
    let buf = chunk
    if (this.partial !== null) {
      const taken = this.fillPartial(chunk)
      if (this.partialFilled < this.partialTotal) return
      const packet = this.partial
      this.partial = null
      this.decodeOne(packet, 0)
      if (taken === chunk.length) return
      buf = chunk.subarray(taken)
      if (this.halted) {
        this.held.unshift(buf)
        return
      }
    } else if (this.head !== null) {
      buf = Buffer.concat([this.head, chunk])
      this.head = null
    }
    let offset = 0
    while (offset < buf.length && !this.halted) {
      const consumed = this.decodeOne(buf, offset)
      if (consumed === 0) break
      offset += consumed
    }
    if (offset === buf.length) return
    const rest = buf.subarray(offset)
    if (this.halted) {
      this.held.unshift(rest)
      return
    }
    const total = this.packetLength(rest)
    if (total === -1) {
      this.head = Buffer.from(rest)
      return
    }
    this.partialTotal = total
    this.partialFilled = 0
    // Start small: a client announcing a large packet and sending it slowly gets memory in
    // proportion to what it sent, not to what it announced.
    this.partial = Buffer.allocUnsafe(Math.min(total, Math.max(4096, rest.length * 2)))
    this.fillPartial(rest)
  }

  /** Copies as much of `chunk` as the partial packet still needs; returns how much it took. */
  private fillPartial(chunk: Buffer): number {
    let partial = this.partial as Buffer
    const take = Math.min(this.partialTotal - this.partialFilled, chunk.length)
    const needed = this.partialFilled + take
    if (needed > partial.length) {
      const grown = Buffer.allocUnsafe(Math.min(this.partialTotal, Math.max(needed, partial.length * 2)))
      partial.copy(grown, 0, 0, this.partialFilled)
      partial = this.partial = grown
    }
    chunk.copy(partial, this.partialFilled, 0, take)
    this.partialFilled = needed
    return take
  }

  /** Total length of the packet starting at buf[0], -1 if its header is incomplete; checks the size limit. */
  private packetLength(buf: Buffer): number {
    checkFirstByte(buf[0] as number)
    let value = 0
    let multiplier = 1
    for (let i = 1; i <= 4; i++) {
      if (i >= buf.length) return -1
      const b = buf[i] as number
      value += (b & 0x7f) * multiplier
      if ((b & 0x80) === 0) {
        // [MQTT-1.5.5-1] (3.1.1: section 2.2.3) the Remaining Length in its minimum number of bytes
        if (b === 0 && i > 1) throw new DecodeError(NOT_MINIMAL)
        const total = 1 + i + value
        if (total > this.maxPacketSize) {
          throw new DecodeError(`packet of ${total} bytes exceeds the maximum of ${this.maxPacketSize}`, ReasonCode.PacketTooLarge)
        }
        return total
      }
      multiplier *= 128
    }
    throw new DecodeError('remaining length longer than 4 bytes')
  }

  /** Decodes the packet at `offset`; returns the bytes it took, or 0 when it is not complete yet. */
  private decodeOne(buf: Buffer, offset: number): number {
    checkFirstByte(buf[offset] as number)
    let value = 0
    let multiplier = 1
    let pos = offset + 1
    for (;;) {
      if (pos >= buf.length) return 0
      const b = buf[pos++] as number
      value += (b & 0x7f) * multiplier
      if ((b & 0x80) === 0) {
        // [MQTT-1.5.5-1] (3.1.1: section 2.2.3) the Remaining Length in its minimum number of bytes
        if (b === 0 && pos - offset > 2) throw new DecodeError(NOT_MINIMAL)
        break
      }
      multiplier *= 128
      if (pos - offset > 4) throw new DecodeError('remaining length longer than 4 bytes')
    }
    const total = pos - offset + value
    if (total > this.maxPacketSize) {
      throw new DecodeError(`packet of ${total} bytes exceeds the maximum of ${this.maxPacketSize}`, ReasonCode.PacketTooLarge)
    }
    if (pos + value > buf.length) return 0
    const type = (buf[offset] as number) >> 4
    this.packetCounts[type] = (this.packetCounts[type] as number) + 1
    this.byteCounts[type] = (this.byteCounts[type] as number) + total
    this.cursor.reset(buf, pos, pos + value)
    if (this.onPacket(this.decodeBody(buf[offset] as number, pos - offset)) === false) this.halted = true
    return total
  }

  private decodeBody(first: number, headerLength: number): Packet {
    // The first byte was checked by checkFirstByte when the header arrived.
    const type = first >> 4
    if (type === 3) return this.decodePublish(first & 0x0f, headerLength)
    const c = this.cursor
    const name = PACKET_NAMES[type]
    const v5 = this.protocolVersion === 5
    switch (name) {
      case 'connect':
        return this.decodeConnect()
      case 'connack': {
        const ackFlags = c.byte()
        if (ackFlags & 0xfe) throw new DecodeError('reserved CONNACK flags set')
        const returnCode = c.byte()
        const properties = v5 ? this.properties('connack') : undefined
        return this.done({ type: 'connack', sessionPresent: (ackFlags & 1) === 1, returnCode }, properties)
      }
      case 'puback':
      case 'pubrec':
      case 'pubrel':
      case 'pubcomp': {
        const packetId = c.u16()
        const ack: AckPacket = { type: name, packetId }
        if (v5 && c.remaining > 0) {
          const reasonCode = c.byte()
          // The sender MUST use one of the codes of the packet's table: PUBACK [MQTT-3.4.2-1],
          // PUBREC [MQTT-3.5.2-1], PUBREL [MQTT-3.6.2-1], PUBCOMP [MQTT-3.7.2-1]. The packet parses,
          // its data is not allowed: a Protocol Error (section 1.2).
          if (!ACK_REASON_CODES[name].has(reasonCode)) {
            throw new DecodeError(`reason code 0x${reasonCode.toString(16).padStart(2, '0')} is not a ${name.toUpperCase()} reason code`, ReasonCode.ProtocolError)
          }
          ack.reasonCode = reasonCode
          if (c.remaining > 0) ack.properties = this.properties(name)
        }
        return this.done(ack)
      }
      case 'subscribe':
        return this.decodeSubscribe()
      case 'suback': {
        const packetId = c.u16()
        const properties = v5 ? this.properties('suback') : undefined
        const reasonCodes: number[] = []
        while (c.remaining > 0) reasonCodes.push(c.byte())
        return this.done({ type: 'suback', packetId, reasonCodes }, properties)
      }
      case 'unsubscribe': {
        const packetId = this.packetId()
        const properties = v5 ? this.properties('unsubscribe') : undefined
        const topicFilters: string[] = []
        while (c.remaining > 0) topicFilters.push(c.string())
        // [MQTT-3.10.3-2] at least one topic filter
        if (topicFilters.length === 0) throw new DecodeError('UNSUBSCRIBE without topic filters', ReasonCode.ProtocolError)
        return this.done({ type: 'unsubscribe', packetId, topicFilters }, properties)
      }
      case 'unsuback': {
        const packetId = c.u16()
        if (!v5) return this.done({ type: 'unsuback', packetId })
        const properties = this.properties('unsuback')
        const reasonCodes: number[] = []
        while (c.remaining > 0) reasonCodes.push(c.byte())
        return this.done({ type: 'unsuback', packetId, reasonCodes }, properties)
      }
      case 'pingreq':
      case 'pingresp':
        return this.done({ type: name })
      case 'disconnect': {
        if (!v5 || c.remaining === 0) return this.done({ type: 'disconnect' })
        const reasonCode = c.byte()
        const properties = c.remaining > 0 ? this.properties('disconnect') : undefined
        return this.done({ type: 'disconnect', reasonCode }, properties)
      }
      case 'auth': {
        if (!v5) throw new DecodeError('AUTH is an MQTT 5 packet', ReasonCode.ProtocolError)
        // Section 3.15.2.1: reason code and properties may be omitted for success without properties.
        if (c.remaining === 0) return { type: 'auth', reasonCode: 0 }
        const reasonCode = c.byte()
        const properties = c.remaining > 0 ? this.properties('auth') : undefined
        return this.done({ type: 'auth', reasonCode }, properties)
      }
      default:
        // Unreachable: PUBLISH is decoded above, type 0 refused by checkFirstByte.
        throw new DecodeError(`unexpected packet type ${type}`)
    }
  }

  /**
   * Checks that the packet has no bytes left over, then returns it with its properties if it has
   * any. A packet never carries a `properties` key set to undefined.
   */
  private done<P extends Packet>(packet: P, properties?: Properties): P {
    if (this.cursor.remaining !== 0) throw new DecodeError(`unexpected bytes at the end of ${packet.type}`)
    if (properties !== undefined) (packet as { properties?: Properties }).properties = properties
    return packet
  }

  /** [MQTT-2.3.1-1] packets that need an identifier must carry a non-zero one. */
  private packetId(): number {
    const id = this.cursor.u16()
    if (id === 0) throw new DecodeError('packet identifier 0', ReasonCode.ProtocolError)
    return id
  }

  private decodePublish(flags: number, headerLength: number): PublishPacket {
    const c = this.cursor
    // QoS 3 [MQTT-3.3.1-4] and DUP at QoS 0 [MQTT-3.3.1-2] were refused by checkFirstByte.
    const qos = (flags >> 1) & 3
    const dup = (flags & 8) !== 0
    const topic = this.publishTopic()
    const packetId = qos > 0 ? this.packetId() : 0
    const packet: PublishPacket = {
      type: 'publish',
      topic,
      payload: c.buf.subarray(c.pos, c.end),
      qos: qos as QoS,
      retain: (flags & 1) !== 0,
      dup,
      packetId,
      bytesBeforePayload: 0,
    }
    if (this.protocolVersion === 5) {
      packet.properties = this.properties('publish')
      packet.payload = c.buf.subarray(c.pos, c.end)
    } else {
      // A 3.1/3.1.1 PUBLISH is sent on as it came when the QoS and RETAIN flag stay the same.
      packet.bytesBeforePayload = headerLength + c.pos - c.start
      packet.wire = c.buf
    }
    return packet
  }

  /**
   * A PUBLISH's topic name. Publishers mostly repeat their last topic: an ASCII topic is kept and
   * compared byte for byte, so a repeat costs neither UTF-8 checks nor a new string (which the
   * topic index would hash again). Other topics go through `Cursor.string`'s checks.
   */
  private publishTopic(): string {
    const c = this.cursor
    const buf = c.buf
    const start = c.pos + 2
    if (start > c.end) return c.string()
    const len = ((buf[c.pos] as number) << 8) | (buf[c.pos + 1] as number)
    const end = start + len
    if (end > c.end) return c.string()
    const last = this.lastTopic
    if (last.length === len && len > 0) {
      let i = 0
      while (i < len && (buf[start + i] as number) === last.charCodeAt(i)) i++
      if (i === len) {
        c.pos = end
        return last
      }
    }
    for (let i = start; i < end; i++) {
      const b = buf[i] as number
      // Not ASCII, or U+0000: the full checks decide (and refuse U+0000).
      if (b === 0 || b > 0x7f) return c.string()
    }
    c.pos = end
    // ASCII, so latin1 decodes it exactly and cheaper than utf8.
    const topic = buf.toString('latin1', start, end)
    if (len <= MAX_REMEMBERED_TOPIC) this.lastTopic = topic
    return topic
  }

  private decodeConnect(): ConnectPacket {
    const c = this.cursor
    const protocolName = c.string()
    const level = c.byte()
    // A Mosquitto bridge sets the level's top bit (0x83, 0x84: its `try_private`) to say it is a
    // bridge, and expects its own messages not to come back to it.
    const bridge = (level === 0x83 && protocolName === 'MQIsdp') || (level === 0x84 && protocolName === 'MQTT')
    const protocolVersion = bridge ? level & 0x7f : level
    // [MQTT-3.1.2-1] an unknown protocol name may be disconnected without CONNACK
    if (protocolName !== 'MQTT' && protocolName !== 'MQIsdp') throw new DecodeError(`unknown protocol name ${JSON.stringify(protocolName)}`, ReasonCode.UnsupportedProtocolVersion)
    const knownLevel = isSupportedProtocol(protocolName, protocolVersion)
    const connect: ConnectPacket = { type: 'connect', protocolName, protocolVersion, cleanSession: true, keepAlive: 0, clientId: '' }
    if (bridge) connect.bridge = true
    // [MQTT-3.1.2-2] an unsupported level is answered with CONNACK 1; the rest of the packet is not ours to read
    if (!knownLevel) return connect
    this.protocolVersion = protocolVersion as ProtocolVersion
    const v5 = protocolVersion === 5
    const flags = c.byte()
    // [MQTT-3.1.2-3] the reserved flag must be 0
    if (flags & 1) throw new DecodeError('reserved CONNECT flag set')
    connect.cleanSession = (flags & 2) !== 0
    const willFlag = (flags & 4) !== 0
    const willQos = (flags >> 3) & 3
    const willRetain = (flags & 32) !== 0
    const hasPassword = (flags & 64) !== 0
    const hasUsername = (flags & 128) !== 0
    if (!willFlag && (willQos !== 0 || willRetain)) {
      // [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]
      throw new DecodeError('will QoS or retain set without a will')
    }
    // [MQTT-3.1.2-14]
    if (willQos === 3) throw new DecodeError('will QoS 3')
    // [MQTT-3.1.2-22] 3.1.1: no password without a user name (allowed in MQTT 5)
    if (hasPassword && !hasUsername && !v5) throw new DecodeError('password without user name')
    connect.keepAlive = c.u16()
    if (v5) {
      const properties = (connect.properties = this.properties('connect'))
      // Section 3.1.2.11.10: "It is a Protocol Error to include Authentication Data if there is no
      // Authentication Method"
      if (properties.authenticationData !== undefined && properties.authenticationMethod === undefined) {
        throw new DecodeError('Authentication Data without an Authentication Method', ReasonCode.ProtocolError)
      }
    }
    connect.clientId = c.string()
    if (willFlag) {
      const willProperties = v5 ? this.properties('will') : undefined
      const will: WillMessage = { topic: c.string(), payload: Buffer.from(c.binary()), qos: willQos as QoS, retain: willRetain }
      if (willProperties) will.properties = willProperties
      connect.will = will
    }
    if (hasUsername) connect.username = c.string()
    // The password is binary data; copied so the session can outlive the socket buffer.
    if (hasPassword) connect.password = Buffer.from(c.binary())
    return this.done(connect)
  }

  private decodeSubscribe(): Packet {
    const c = this.cursor
    const v5 = this.protocolVersion === 5
    const packetId = this.packetId()
    const properties = v5 ? this.properties('subscribe') : undefined
    const subscriptions: Subscription[] = []
    while (c.remaining > 0) {
      const topicFilter = c.string()
      const options = c.byte()
      const qos = options & 3
      if (v5) {
        // [MQTT-3.8.3-5] reserved bits must be 0 (malformed); Maximum QoS 3 and Retain Handling 3
        // are protocol errors (section 3.8.3.1)
        if (options & 0xc0) throw new DecodeError('reserved subscription option bits set')
        if (qos === 3) throw new DecodeError('subscription with maximum QoS 3', ReasonCode.ProtocolError)
        const retainHandling = (options >> 4) & 3
        if (retainHandling === 3) throw new DecodeError('retain handling 3', ReasonCode.ProtocolError)
        subscriptions.push({
          topicFilter,
          qos: qos as QoS,
          noLocal: (options & 4) !== 0,
          retainAsPublished: (options & 8) !== 0,
          retainHandling: retainHandling as 0 | 1 | 2,
        })
      } else {
        // [MQTT-3.8.3-4] 3.1.1: the upper six bits of the requested QoS byte are reserved, and QoS 3 is malformed
        if (options & 0xfc) throw new DecodeError('reserved bits set in requested QoS')
        if (qos === 3) throw new DecodeError('subscription with QoS 3')
        subscriptions.push({ topicFilter, qos: qos as QoS })
      }
    }
    // at least one subscription: 3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2]
    if (subscriptions.length === 0) throw new DecodeError('SUBSCRIBE without subscriptions', ReasonCode.ProtocolError)
    return this.done({ type: 'subscribe', packetId, subscriptions }, properties)
  }

  /**
   * Reads an MQTT 5 property block (section 2.2.2), checking each property belongs on this packet,
   * appears at most once unless repeatable, and has a value the specification allows.
   */
  private properties(place: PropertyPlace): Properties {
    const c = this.cursor
    const length = c.varint()
    c.need(length)
    const end = c.pos + length
    const props: Properties = {}
    const bag = props as Record<string, unknown>
    while (c.pos < end) {
      const id = c.varint()
      const def = PROPERTY_BY_ID.get(id)
      // Section 2.2.2.2: an identifier that is unknown or not valid for the packet type is malformed.
      if (!def) throw new DecodeError(`unknown property 0x${id.toString(16)}`)
      if (!def.places.has(place)) throw new DecodeError(`property ${def.name} is not allowed on ${place}`)
      let value: unknown
      switch (def.type) {
        case 'byte': {
          const b = c.byte()
          if (b > 1 && def.booleanValue) throw new DecodeError(`property ${def.name} is ${b}, not 0 or 1`, ReasonCode.ProtocolError)
          value = b
          break
        }
        case 'u16':
        case 'u32':
        case 'varint': {
          const n = def.type === 'u16' ? c.u16() : def.type === 'u32' ? c.u32() : c.varint()
          if (n === 0 && def.nonZero) throw new DecodeError(`property ${def.name} is 0`, ReasonCode.ProtocolError)
          value = n
          break
        }
        case 'string':
          value = c.string()
          // PUBLISH: "The Response Topic MUST NOT contain wildcard characters" [MQTT-3.3.2-14]. The will's
          // (section 3.1.3.2.6) is "used as the Topic Name for a response message", which may hold no
          // wildcard either [MQTT-4.7.0-1]. The packet parses, so this is a Protocol Error (section 1.2).
          if (id === RESPONSE_TOPIC && hasWildcard(value as string)) {
            throw new DecodeError(`wildcard in the Response Topic ${JSON.stringify(value)}`, ReasonCode.ProtocolError)
          }
          break
        case 'binary': value = Buffer.from(c.binary()); break
        case 'pair': value = [c.string(), c.string()]; break
      }
      if (def.repeatable) {
        const list = (bag[def.name] as unknown[] | undefined) ?? (bag[def.name] = [])
        if (def.name === 'subscriptionIdentifier' && place === 'subscribe' && list.length > 0) {
          throw new DecodeError('more than one subscription identifier', ReasonCode.ProtocolError)
        }
        list.push(value)
      } else {
        // "It is a Protocol Error to include the <property> more than once" (sections 3.1.2.11 to 3.15.2.2)
        if (bag[def.name] !== undefined) throw new DecodeError(`property ${def.name} more than once`, ReasonCode.ProtocolError)
        bag[def.name] = value
      }
    }
    if (c.pos !== end) throw new DecodeError('property length does not match its contents')
    return props
  }
}
