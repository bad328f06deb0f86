/**
 * Raw-packet helpers for integration tests: build valid packets with the broker's own encoder,
 * read what the broker sends back with its own decoder, over a `RawClient` socket (or any
 * `RawStream`).
 */
import assert from 'node:assert/strict'
import { encodePacket } from '../../src/protocol/encoder.js'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import type { ConnackPacket, ConnectPacket, Packet, ProtocolVersion, PublishPacket, QoS } from '../../src/protocol/packets.js'
import { disconnected, type RawClient, type RawStream, type TestBroker } from '../helpers.js'
import { buildConnect, lp, packet } from './raw.js'

// `mqtt` client helpers, now in ../helpers.ts; still exported here under the same names because
// test/connection/fuzz.test.ts imports `Inbox` from this file.
export { Inbox, subackCodes, type Received } from '../helpers.js'

/** The packet interface(s) whose `type` can be `T` (AckPacket covers four types, so Extract won't do). */
export type PacketOf<T extends Packet['type']> = Packet extends infer P ? (P extends { type: infer U } ? (T extends U ? P : never) : never) : never

/** A raw MQTT session: writes packets, decodes and queues what the broker sends. */
export class RawMqtt<Raw extends RawStream = RawClient> {
  /** Packets received and not taken yet, in arrival order. */
  readonly inbox: Packet[] = []
  private readonly decoder: PacketDecoder
  private consumed = 0
  private decodeError: Error | undefined

  constructor(
    readonly raw: Raw,
    readonly version: ProtocolVersion = 4,
  ) {
    this.decoder = new PacketDecoder((p) => this.inbox.push(p))
    this.decoder.protocolVersion = version
  }

  /**
   * Opens a raw socket to `b` and sends a CONNECT with `fields` (3.1.1, clean session, keep alive 0
   * unless told otherwise); asserts that the broker's first packet is a CONNACK accepting it.
   */
  static async connect(
    b: TestBroker,
    fields: Partial<Omit<ConnectPacket, 'type' | 'protocolVersion'>> & { clientId: string; protocolVersion?: 3 | 4 },
  ): Promise<{ peer: RawMqtt; connack: ConnackPacket }> {
    const connect = buildConnect(fields)
    const peer = new RawMqtt(await b.raw(), connect.protocolVersion as ProtocolVersion)
    peer.send(connect)
    const connack = await peer.next('connack')
    assert.equal(connack.returnCode, 0, 'CONNACK return code')
    return { peer, connack }
  }

  /** Opens a raw socket to `b` and completes a CONNECT/CONNACK handshake with a clean session. */
  static async open(b: TestBroker, clientId: string, version: 3 | 4 = 4): Promise<RawMqtt> {
    return (await RawMqtt.connect(b, { clientId, protocolVersion: version })).peer
  }

  send(packet: Packet): void {
    this.raw.write(encodePacket(packet, this.version))
  }

  /** Writes hand-crafted bytes. */
  write(bytes: Buffer | number[]): void {
    this.raw.write(bytes)
  }

  publish(topic: string, payload: string | Buffer, qos: QoS, packetId = 0, opts: { dup?: boolean; retain?: boolean } = {}): void {
    this.send({
      type: 'publish',
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      qos,
      packetId,
      dup: opts.dup ?? false,
      retain: opts.retain ?? false,
    })
  }

  /** Decodes bytes received since the last call. */
  private pump(): void {
    const received = this.raw.received
    if (received.length === this.consumed || this.decodeError) return
    const chunk = received.subarray(this.consumed)
    this.consumed = received.length
    try {
      this.decoder.push(chunk)
    } catch (error) {
      this.decodeError = error as Error
    }
  }

  /** Every packet received so far that has not been taken (decoding what has arrived). */
  pending(): Packet[] {
    this.pump()
    return this.inbox
  }

  /**
   * Waits for the first not-yet-taken packet of `type` (matching `where`), removes it from the
   * inbox and returns it.
   */
  async take<T extends Packet['type']>(type: T, where: (p: PacketOf<T>) => boolean = () => true, ms = 3000): Promise<PacketOf<T>> {
    let found = -1
    const look = (): boolean => {
      this.pump()
      if (this.decodeError) throw this.decodeError
      found = this.inbox.findIndex((p) => p.type === type && where(p as PacketOf<T>))
      return found >= 0 || this.raw.closed
    }
    await this.raw.until(look, ms, `a ${type.toUpperCase()} from the broker`)
    if (found < 0) throw new Error(`connection closed while waiting for ${type.toUpperCase()}`)
    return this.inbox.splice(found, 1)[0] as PacketOf<T>
  }

  /** Waits for the next packet, which must be of `type`, and takes it. */
  async next<T extends Packet['type']>(type: T, ms = 3000): Promise<PacketOf<T>> {
    const look = (): boolean => {
      this.pump()
      if (this.decodeError) throw this.decodeError
      return this.inbox.length > 0 || this.raw.closed
    }
    await this.raw.until(look, ms, `a ${type.toUpperCase()} from the broker`)
    const packet = this.inbox.shift()
    if (packet === undefined) throw new Error(`connection closed while waiting for ${type.toUpperCase()}`)
    assert.equal(packet.type, type, `expected ${type.toUpperCase()}, got ${JSON.stringify(packet)}`)
    return packet as PacketOf<T>
  }

  /** Subscribes to one filter and asserts that the next packet is a SUBACK granting `qos`. */
  async subscribe(topicFilter: string, qos: QoS, packetId = 1): Promise<void> {
    this.send({ type: 'subscribe', packetId, subscriptions: [{ topicFilter, qos }] })
    const suback = await this.next('suback')
    assert.deepEqual(suback.reasonCodes, [qos])
  }

  /** Waits for a PUBLISH with this payload. */
  takePublish(payload: string, ms = 3000): Promise<PublishPacket> {
    return this.take('publish', (p) => p.payload.toString() === payload, ms)
  }

  waitClosed(ms = 3000): Promise<void> {
    return this.raw.waitClosed(ms)
  }

  /** Drops the connection without DISCONNECT and waits until the broker has noticed that `clientId` left. */
  async drop(b: TestBroker, clientId: string): Promise<void> {
    const gone = disconnected(b, clientId)
    this.raw.stream.destroy()
    await gone
  }
}

/** The first byte and remaining length of a fixed header, for hand-crafted packets. */
export function fixedHeader(first: number, body: number[] | Buffer): Buffer {
  if (body.length > 127) throw new RangeError('fixedHeader: body too long for a one-byte length')
  return packet(first, body)
}

/** A length-prefixed UTF-8 string, as bytes. */
export function str(s: string): number[] {
  return [...lp(s)]
}

/** A 16-bit big-endian integer, as bytes. */
export function u16(n: number): number[] {
  return [n >> 8, n & 0xff]
}
