/**
 * Raw-packet helpers for integration tests: build valid packets with the broker's own encoder,
 * read what the broker sends back with its own decoder, over a `RawClient` socket.
 */
import type { MqttClient } from 'mqtt'
import { encodePacket } from '../../src/protocol/encoder.js'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import type { Packet, ProtocolVersion, PublishPacket, QoS } from '../../src/protocol/packets.js'
import type { RawClient, TestBroker } from '../helpers.js'

/** The packet interface(s) whose `type` can be `T` (AckPacket covers four types, so Extract won't do). */
type PacketOf<T extends Packet['type']> = Packet extends infer P ? (P extends { type: infer U } ? (T extends U ? P : never) : never) : never

/** A raw MQTT session: writes packets, decodes and queues what the broker sends. */
export class RawMqtt {
  /** Packets received and not taken yet, in arrival order. */
  readonly inbox: Packet[] = []
  private readonly decoder: PacketDecoder
  private consumed = 0
  private decodeError: Error | undefined

  constructor(
    readonly raw: RawClient,
    readonly version: ProtocolVersion = 4,
  ) {
    this.decoder = new PacketDecoder((p) => this.inbox.push(p))
    this.decoder.protocolVersion = version
  }

  /** Opens a raw socket to `b` and completes a CONNECT/CONNACK handshake. */
  static async open(b: TestBroker, clientId: string, version: 3 | 4 = 4): Promise<RawMqtt> {
    const session = new RawMqtt(await b.raw(), version)
    session.send({
      type: 'connect',
      protocolName: version === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: version,
      cleanSession: true,
      keepAlive: 0,
      clientId,
    })
    const connack = await session.take('connack')
    if (connack.returnCode !== 0) throw new Error(`CONNACK ${connack.returnCode}`)
    return session
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

  /** Waits for a PUBLISH with this payload. */
  takePublish(payload: string, ms = 3000): Promise<PublishPacket> {
    return this.take('publish', (p) => p.payload.toString() === payload, ms)
  }

  waitClosed(ms = 3000): Promise<void> {
    return this.raw.waitClosed(ms)
  }
}

/** The first byte and remaining length of a fixed header, for hand-crafted packets. */
export function fixedHeader(first: number, body: number[] | Buffer): Buffer {
  const b = Buffer.from(body)
  if (b.length > 127) throw new RangeError('fixedHeader: body too long for a one-byte length')
  return Buffer.concat([Buffer.from([first, b.length]), b])
}

/** A length-prefixed UTF-8 string, as bytes. */
export function str(s: string): number[] {
  const b = Buffer.from(s)
  return [b.length >> 8, b.length & 0xff, ...b]
}

/** A 16-bit big-endian integer, as bytes. */
export function u16(n: number): number[] {
  return [n >> 8, n & 0xff]
}

/** What an `mqtt` client saw of one received PUBLISH. */
export interface Received {
  topic: string
  payload: string
  qos: number
  retain: boolean
  dup: boolean
}

/** Collects the messages an `mqtt` client receives, and waits for some of them. */
export class Inbox {
  readonly messages: Received[] = []
  private waiters: Array<() => void> = []

  constructor(client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, dup: packet.dup })
      const w = this.waiters
      this.waiters = []
      for (const f of w) f()
    })
  }

  /** Waits until `predicate` holds over the messages received so far. */
  async until(predicate: (messages: Received[]) => boolean, ms = 3000, what = 'messages'): Promise<void> {
    const deadline = Date.now() + ms
    while (!predicate(this.messages)) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.messages.map((m) => `${m.topic}:${m.payload}`))}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  /** Waits for a message with this payload and returns it. */
  async waitFor(payload: string, ms = 3000): Promise<Received> {
    await this.until((m) => m.some((x) => x.payload === payload), ms, `a message ${JSON.stringify(payload)}`)
    return this.messages.find((x) => x.payload === payload) as Received
  }

  /** Waits for `n` messages in all. */
  waitCount(n: number, ms = 3000): Promise<void> {
    return this.until((m) => m.length >= n, ms, `${n} messages`)
  }

  /** Messages with this payload. */
  withPayload(payload: string): Received[] {
    return this.messages.filter((x) => x.payload === payload)
  }

  /** Messages on this topic. */
  onTopic(topic: string): Received[] {
    return this.messages.filter((x) => x.topic === topic)
  }
}

/** Subscribes and returns the SUBACK return codes, including failures (which make `subscribeAsync` reject). */
export function subackCodes(client: MqttClient, subscriptions: Record<string, { qos: QoS }>): Promise<number[]> {
  return new Promise((resolve, reject) => {
    client.subscribe(subscriptions, (err, _granted, packet) => {
      if (packet !== undefined) resolve([...(packet.granted as number[])])
      else reject(err ?? new Error('no SUBACK'))
    })
  })
}
