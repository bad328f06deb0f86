/**
 * The one raw MQTT client of the tests. It speaks through any Duplex (a TCP socket to the broker,
 * or one end of an in-memory pair given to `broker.handle`) and offers two views of the
 * connection: the bytes (`received`, `write`, `waitBytes`), for malformed input and byte-exact
 * answers, and the packets (`send`, `next`, `take`, ...), encoded and decoded with the broker's own
 * codec at the client's protocol level. Waiting is event-driven: every byte received, and the
 * close, wakes the waiters.
 *
 * `RawV5` is another name for it, kept for the tests written against the MQTT 5 client it replaced.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { Duplex } from 'node:stream'
import type { Broker } from '../../src/index.js'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type {
  ConnackPacket,
  ConnectPacket,
  Packet,
  Properties,
  ProtocolVersion,
  PublishPacket,
  QoS,
  SubackPacket,
  Subscription,
} from '../../src/protocol/packets.js'
import { buildConnect, connectPacket, describePacket, hex, type PacketOf } from './packets.js'
import { DEFAULT_WAIT_MS, disconnected, Waiters } from './wait.js'

/** What the static constructors need of a test broker. */
interface RawSource {
  broker: Broker
  raw(version?: ProtocolVersion): Promise<RawMqtt>
}

export interface PublishOptions {
  /** Default: 1 for QoS 1 and 2, 0 for QoS 0. */
  packetId?: number
  retain?: boolean
  dup?: boolean
  properties?: Properties
}

type ConnectFields = Partial<Omit<ConnectPacket, 'type' | 'protocolVersion'>> & { clientId: string }

export class RawMqtt {
  /** Every byte the broker sent, in order. */
  received: Buffer = Buffer.alloc(0)
  /** The stream has closed (the broker closed it, or the test destroyed it). */
  closed = false
  /** Packets received and not taken yet, in arrival order. */
  readonly inbox: Packet[] = []
  /** Every packet received, taken or not, in arrival order. */
  readonly all: Packet[] = []
  private readonly waiters = new Waiters()
  private readonly decoder: PacketDecoder
  /** What the decoder threw, if the broker sent something it cannot read: thrown by the packet view. */
  private decodeError: Error | undefined

  readonly stream: Duplex

  /**
   * A client over `source`, speaking protocol level `version`: a Duplex, or another RawMqtt whose
   * stream (and the bytes it received so far) this one takes over (tests once wrapped the byte
   * client in the packet client this way: `new RawMqtt(await b.raw())`).
   */
  constructor(
    source: Duplex | RawMqtt,
    readonly version: ProtocolVersion = 4,
  ) {
    this.decoder = new PacketDecoder((p) => {
      this.inbox.push(p)
      this.all.push(p)
    })
    this.decoder.protocolVersion = version
    if (source instanceof RawMqtt) {
      this.stream = source.stream
      this.closed = source.closed
      this.receive(source.received)
    } else {
      this.stream = source
    }
    this.stream.on('data', (chunk: Buffer) => this.receive(chunk))
    this.stream.on('close', () => {
      this.closed = true
      this.waiters.notify()
    })
    this.stream.on('error', () => {})
  }

  /** A TCP connection to a broker on the loopback interface. */
  static tcp(port: number, version: ProtocolVersion = 4): Promise<RawMqtt> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawMqtt(socket, version)))
      socket.once('error', reject)
    })
  }

  /**
   * Sends a CONNECT with `fields` (3.1.1, clean session, keep alive 0 unless told otherwise) on a
   * new connection to `b`, and asserts that the broker's first packet is a CONNACK accepting it.
   */
  static async connect(b: RawSource, fields: ConnectFields & { protocolVersion?: 3 | 4 }): Promise<{ peer: RawMqtt; connack: ConnackPacket }> {
    const connect = buildConnect(fields)
    const peer = await b.raw(connect.protocolVersion as ProtocolVersion)
    peer.send(connect)
    const connack = await peer.next('connack')
    assert.equal(connack.returnCode, 0, 'CONNACK return code')
    return { peer, connack }
  }

  /** `open(b, clientId)`: a connection to `b` through CONNECT/CONNACK, clean session. `open(port)`: a bare TCP connection (MQTT 5 unless told). */
  static open(b: RawSource, clientId: string, version?: 3 | 4): Promise<RawMqtt>
  static open(port: number, version?: ProtocolVersion): Promise<RawMqtt>
  static async open(target: RawSource | number, idOrVersion?: string | ProtocolVersion, version: 3 | 4 = 4): Promise<RawMqtt> {
    if (typeof target === 'number') return RawMqtt.tcp(target, typeof idOrVersion === 'number' ? idOrVersion : 5)
    return (await RawMqtt.connect(target, { clientId: String(idOrVersion), protocolVersion: version })).peer
  }

  /** This client (it used to wrap a separate byte stream, and tests still say `peer.raw`). */
  get raw(): this {
    return this
  }

  /** The TCP socket under this client. */
  get socket(): net.Socket {
    if (!(this.stream instanceof net.Socket)) throw new TypeError('this raw client is not over a TCP socket')
    return this.stream
  }

  // -------------------------------------------------------------------------------------------
  // Bytes
  // -------------------------------------------------------------------------------------------

  private receive(chunk: Buffer): void {
    this.received = Buffer.concat([this.received, chunk])
    if (this.decodeError === undefined) {
      try {
        this.decoder.push(chunk)
      } catch (error) {
        this.decodeError = error as Error
      }
    }
    this.waiters.notify()
  }

  /** Writes hand-crafted bytes. */
  write(bytes: Buffer | number[]): void {
    this.stream.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
  }

  /** Waits until `predicate` holds (re-checked on every chunk received and on close); fails after `ms`. */
  until(predicate: () => boolean, ms: number = DEFAULT_WAIT_MS, what: string | (() => string) = 'condition'): Promise<void> {
    return this.waiters.until(predicate, ms, what)
  }

  /** Waits for the broker to close the connection. */
  waitClosed(ms: number = DEFAULT_WAIT_MS): Promise<void> {
    return this.until(() => this.closed, ms, 'the broker to close the connection')
  }

  /** Waits for at least `n` bytes in all. */
  waitBytes(n: number, ms: number = DEFAULT_WAIT_MS): Promise<void> {
    return this.until(() => this.received.length >= n, ms, `${n} bytes (got ${this.received.length})`)
  }

  destroy(): void {
    this.stream.destroy()
  }

  // -------------------------------------------------------------------------------------------
  // Packets
  // -------------------------------------------------------------------------------------------

  send(packet: Packet): void {
    this.write(encodePacket(packet, this.version))
  }

  /** Sends CONNECT at this client's protocol level and returns the broker's first packet, which must be a CONNACK. */
  async connect(fields: ConnectFields): Promise<ConnackPacket> {
    const p = this.version === 5 ? connectPacket({ ...fields, protocolVersion: 5 }) : buildConnect({ ...fields, protocolVersion: this.version })
    this.send(p)
    return this.next('connack')
  }

  /** PUBLISH; a number after the QoS is the packet identifier (then `options` for the flags). */
  publish(topic: string, payload: string | Buffer, qos?: QoS, options?: PublishOptions): void
  publish(topic: string, payload: string | Buffer, qos: QoS, packetId: number, options?: { dup?: boolean; retain?: boolean }): void
  publish(topic: string, payload: string | Buffer, qos: QoS = 0, idOrOptions: number | PublishOptions = {}, more: PublishOptions = {}): void {
    const o: PublishOptions = typeof idOrOptions === 'number' ? { ...more, packetId: idOrOptions } : idOrOptions
    const p: PublishPacket = {
      type: 'publish',
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      qos,
      retain: o.retain ?? false,
      dup: o.dup ?? false,
      packetId: o.packetId ?? (qos === 0 ? 0 : 1),
    }
    if (o.properties !== undefined) p.properties = o.properties
    this.send(p)
  }

  /**
   * `subscribe(filter, qos)`: one filter, asserting that the next packet is a SUBACK granting
   * `qos`. `subscribe([...subscriptions], properties)`: returns the SUBACK, whatever it says.
   */
  subscribe(topicFilter: string, qos: QoS, packetId?: number): Promise<void>
  subscribe(subscriptions: Subscription[], properties?: Properties, packetId?: number): Promise<SubackPacket>
  async subscribe(what: string | Subscription[], qosOrProperties?: QoS | Properties, packetId = 1): Promise<void | SubackPacket> {
    if (typeof what === 'string') {
      const qos = qosOrProperties as QoS
      this.send({ type: 'subscribe', packetId, subscriptions: [{ topicFilter: what, qos }] })
      const suback = await this.next('suback')
      assert.deepEqual(suback.reasonCodes, [qos])
      return
    }
    const properties = qosOrProperties as Properties | undefined
    this.send(properties ? { type: 'subscribe', packetId, subscriptions: what, properties } : { type: 'subscribe', packetId, subscriptions: what })
    return this.take('suback', (p) => p.packetId === packetId)
  }

  private check(): void {
    if (this.decodeError) throw this.decodeError
  }

  /** Every packet received so far that has not been taken. */
  pending(): Packet[] {
    this.check()
    return this.inbox
  }

  /** PUBLISHes received so far (taken or not). */
  publishes(): PublishPacket[] {
    this.check()
    return this.all.filter((p): p is PublishPacket => p.type === 'publish')
  }

  /** Waits for the first not-yet-taken packet of `type` (matching `where`), removes it from the inbox and returns it. */
  async take<T extends Packet['type']>(type: T, where: (p: PacketOf<T>) => boolean = () => true, ms: number = DEFAULT_WAIT_MS): Promise<PacketOf<T>> {
    let found = -1
    await this.until(
      () => {
        this.check()
        found = this.inbox.findIndex((p) => p.type === type && where(p as PacketOf<T>))
        return found >= 0 || this.closed
      },
      ms,
      () => `a ${type.toUpperCase()} from the broker; pending: ${this.describe()}`,
    )
    if (found < 0) throw new Error(`connection closed while waiting for ${type.toUpperCase()}; pending: ${this.describe()}`)
    return this.inbox.splice(found, 1)[0] as PacketOf<T>
  }

  /** Waits for the next packet, asserts it is of `type`, and takes it. */
  async next<T extends Packet['type']>(type: T, ms: number = DEFAULT_WAIT_MS): Promise<PacketOf<T>> {
    await this.until(
      () => {
        this.check()
        return this.inbox.length > 0 || this.closed
      },
      ms,
      `a ${type.toUpperCase()} from the broker`,
    )
    const p = this.inbox.shift()
    if (p === undefined) throw new Error(`connection closed while waiting for ${type.toUpperCase()}`)
    assert.equal(p.type, type, `expected ${type.toUpperCase()}, got ${describePacket(p)}`)
    return p as PacketOf<T>
  }

  /** Waits for a PUBLISH with this payload. */
  takePublish(payload: string, ms: number = DEFAULT_WAIT_MS): Promise<PublishPacket> {
    return this.take('publish', (p) => p.payload.toString() === payload, ms)
  }

  /**
   * The fence: PINGREQ, then its PINGRESP. The broker handles a connection's packets in order and
   * answers in order, so by then it has handled everything this client sent before, and every
   * packet it sent this client before the PINGRESP has arrived.
   */
  async ping(ms: number = DEFAULT_WAIT_MS): Promise<void> {
    this.send({ type: 'pingreq' })
    await this.take('pingresp', () => true, ms)
  }

  /** Expects the broker to send DISCONNECT with `reasonCode` and then close the connection. */
  async expectDisconnect(reasonCode: number, ms: number = DEFAULT_WAIT_MS): Promise<PacketOf<'disconnect'>> {
    const p = await this.take('disconnect', () => true, ms)
    assert.equal(hex(p.reasonCode ?? 0), hex(reasonCode), 'DISCONNECT reason code')
    await this.waitClosed(ms)
    return p
  }

  /** Drops the connection without DISCONNECT and waits until the broker has noticed that `clientId` left. */
  async drop(b: { broker: Broker }, clientId: string): Promise<void> {
    const left = disconnected(b, clientId)
    this.stream.destroy()
    await left
  }

  /** The packets not taken yet, short, for failure messages. */
  describe(): string {
    return `[${this.inbox.map(describePacket).join(', ')}]`
  }
}

/**
 * Two connected in-memory Duplex streams: what one writes, the other reads. Like a TCP socket, each
 * ends its side when the other has ended (allowHalfOpen false), and then emits 'close'.
 */
export function memoryPair(): [Duplex, Duplex] {
  const make = (peer: () => Duplex): Duplex =>
    new Duplex({
      allowHalfOpen: false,
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        peer().push(chunk)
        callback()
      },
      final(callback) {
        peer().push(null)
        callback()
      },
    })
  const a: Duplex = make(() => b)
  const b: Duplex = make(() => a)
  return [a, b]
}

/** The raw client at protocol level 5 (`RawV5.open(port)`, or a broker's `raw()`). */
export const RawV5 = RawMqtt
export type RawV5 = RawMqtt
