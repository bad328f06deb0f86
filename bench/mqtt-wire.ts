// Just enough MQTT 3.1.1 for the load generator (MQTT 5 extras in bench/mqtt5-wire.ts): encode a handful of packets once,
// frame the incoming byte stream by fixed header, and drive one TCP client.
//
// The generator must stay cheaper than any broker it measures, so it does not use the
// `mqtt` client or a full decoder: packets are pre-encoded Buffers written over and over,
// and received packets are only framed (type + remaining length); the body is looked at
// only where a scenario needs it (QoS 1 packet id, latency timestamp).
// The bytes produced here are cross-checked against `mqtt-packet` by bench/wire-check.ts.

import net from 'node:net'
import type { Duplex } from 'node:stream'
import { dial, TCP, type Dial } from './dial.js'
import { encodeConnect5, encodeSubscribe5 } from './mqtt5-wire.js'

export const PacketType = {
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  SUBACK: 9,
  PINGRESP: 13,
} as const

export function varint(n: number): number[] {
  const out: number[] = []
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    out.push(byte)
  } while (n > 0)
  return out
}

export function str(s: string): Buffer {
  const body = Buffer.from(s, 'utf8')
  const b = Buffer.allocUnsafe(2 + body.length)
  b.writeUInt16BE(body.length, 0)
  body.copy(b, 2)
  return b
}

export function packet(first: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  return Buffer.concat([Buffer.from([first, ...varint(body.length)]), body])
}

/** `clean` false asks for a persistent session (MQTT 3.1.1 clean session flag off). */
export function encodeConnect(clientId: string, keepaliveSeconds: number, clean = true): Buffer {
  const header = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, clean ? 0x02 : 0x00, 0, 0]) // "MQTT", level 4
  header.writeUInt16BE(keepaliveSeconds, 8)
  return packet(0x10, header, str(clientId))
}

/** One SUBSCRIBE for one filter or several (all at the same QoS). */
export function encodeSubscribe(packetId: number, topic: string | string[], qos: 0 | 1): Buffer {
  const id = Buffer.allocUnsafe(2)
  id.writeUInt16BE(packetId, 0)
  const topics = typeof topic === 'string' ? [topic] : topic
  return packet(0x82, id, ...topics.flatMap((t) => [str(t), Buffer.from([qos])]))
}

export interface PublishTemplate {
  bytes: Buffer
  /** Offset of the 2-byte packet id (QoS 1 only, else -1). */
  idOffset: number
  /** Offset of the first payload byte. */
  payloadOffset: number
}

export function encodePublish(topic: string, payload: Buffer, qos: 0 | 1): PublishTemplate {
  const topicBytes = str(topic)
  const id = qos === 1 ? Buffer.from([0, 1]) : Buffer.alloc(0)
  const bytes = packet(0x30 | (qos << 1), topicBytes, id, payload)
  const headerLen = bytes.length - topicBytes.length - id.length - payload.length
  return {
    bytes,
    idOffset: qos === 1 ? headerLen + topicBytes.length : -1,
    payloadOffset: headerLen + topicBytes.length + id.length,
  }
}

/** `count` copies of one packet back to back, so one write() carries many messages. */
export function repeatPacket(pkt: Buffer, count: number): Buffer {
  const out = Buffer.allocUnsafe(pkt.length * count)
  for (let i = 0; i < count; i++) pkt.copy(out, i * pkt.length)
  return out
}

export function encodePuback(packetId: number, into: Buffer, offset: number): void {
  into[offset] = 0x40
  into[offset + 1] = 2
  into.writeUInt16BE(packetId, offset + 2)
}

export const DISCONNECT = Buffer.from([0xe0, 0])

/**
 * Called once per packet. `buf` is the chunk itself when the packet arrived whole (the common
 * case, no copy) or an assembled copy of the body when it straddled chunks and the framer was
 * told the body matters; `buf` is empty with `len` > 0 when the body was skipped.
 */
export type PacketHandler = (first: number, buf: Buffer, start: number, len: number) => void

const EMPTY = Buffer.alloc(0)
// Framer states.
const State = { First: 0, Length: 1, Body: 2 } as const

export class Framer {
  onPacket: PacketHandler = () => {}
  /** Whether a body that straddles chunks has to be assembled (vs just skipped). */
  wantBody: (first: number) => boolean = () => false

  private state: number = State.First
  private first = 0
  private len = 0
  private mult = 1
  private pending = 0
  private body: Buffer | null = null
  private filled = 0

  push(chunk: Buffer): void {
    const n = chunk.length
    let i = 0
    while (i < n) {
      if (this.state === State.Body) {
        const take = Math.min(this.pending, n - i)
        if (this.body !== null) chunk.copy(this.body, this.filled, i, i + take)
        this.filled += take
        this.pending -= take
        i += take
        if (this.pending === 0) {
          const body = this.body
          this.body = null
          this.state = State.First
          this.onPacket(this.first, body ?? EMPTY, 0, this.len)
        }
      } else if (this.state === State.First) {
        this.first = chunk[i++] as number
        this.len = 0
        this.mult = 1
        this.state = State.Length
      } else {
        const b = chunk[i++] as number
        this.len += (b & 0x7f) * this.mult
        this.mult *= 128
        if ((b & 0x80) !== 0) {
          if (this.mult > 128 ** 4) throw new Error('malformed remaining length from broker')
          continue
        }
        if (n - i >= this.len) {
          this.state = State.First
          const start = i
          i += this.len
          this.onPacket(this.first, chunk, start, this.len)
        } else {
          this.pending = this.len
          this.filled = 0
          this.body = this.wantBody(this.first) ? Buffer.allocUnsafe(this.len) : null
          this.state = State.Body
        }
      }
    }
  }
}

export class TimeoutError extends Error {}

/** Every await in the bench goes through this, so nothing can hang forever. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}

export interface OpenOptions {
  port: number
  clientId: string
  keepalive?: number
  /** One SUBSCRIBE right after CONNECT; with several filters every one must be granted. */
  subscribe?: { topic: string | string[]; qos: 0 | 1 }
  timeoutMs?: number
  /** Clean session flag; default true. False: a persistent session. */
  clean?: boolean
  /** TCP (default), TLS or WebSocket. */
  dial?: Dial
  /** Loopback source address (TCP only), for more connections than one address has ports. */
  localAddress?: string
  /**
   * MQTT 5 instead of 3.1.1 (clean start, no session expiry): the CONNECT carries this Topic
   * Alias Maximum and the SUBSCRIBE this Subscription Identifier.
   */
  v5?: { topicAliasMaximum: number; subscriptionId: number }
  /**
   * Called at CONNACK (or SUBACK) to install the client's own handlers before anything after it
   * in the same read is framed: a persistent session's queue or retained messages come at once.
   */
  ready?: (client: WireClient) => void
}

/** One raw TCP MQTT client. After open() resolves, set `framer.onPacket` to take over. */
export class WireClient {
  readonly framer = new Framer()
  /** Runs after each received chunk has been framed, so replies can be batched per chunk. */
  afterChunk: (() => void) | null = null
  errors = 0
  closed = false
  /** 'data' events so far: messages per read tells how well a broker batches its writes. */
  reads = 0

  private constructor(readonly socket: Duplex) {
    // A WebSocket stream has no Nagle switch of its own (ws turns Nagle off on its socket).
    if (socket instanceof net.Socket) socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => {
      this.reads++
      this.framer.push(chunk)
      if (this.afterChunk !== null) this.afterChunk()
    })
    // Brokers may reset sockets during teardown; that must never crash the generator.
    socket.on('error', () => { this.errors++ })
    socket.on('close', () => { this.closed = true })
  }

  static async open(opts: OpenOptions): Promise<WireClient> {
    const socket = dial(opts.port, opts.dial ?? TCP, opts.localAddress)
    const client = new WireClient(socket)
    const handshake = new Promise<void>((resolve, reject) => {
      let connacked = false
      const done = (err?: Error): void => {
        socket.off('close', onClose)
        socket.off('error', onError)
        client.framer.onPacket = () => {}
        client.framer.wantBody = () => false
        if (err) return reject(err)
        // Before the rest of this chunk is framed: it may already hold messages for the client.
        opts.ready?.(client)
        resolve()
      }
      const onClose = (): void => done(new Error(`${opts.clientId}: closed during handshake`))
      const onError = (err: Error): void => done(err)
      socket.once('close', onClose)
      socket.once('error', onError)
      // A SUBACK for many filters may straddle reads (TLS and WebSocket cut smaller ones too).
      client.framer.wantBody = () => true
      client.framer.onPacket = (first, buf, start, len) => {
        const type = first >> 4
        if (type === PacketType.CONNACK) {
          const rc = len >= 2 ? buf[start + 1] : -1
          if (rc !== 0) return done(new Error(`${opts.clientId}: CONNACK return code ${rc}`))
          connacked = true
          if (opts.subscribe === undefined) done()
        } else if (type === PacketType.SUBACK && connacked) {
          // After the packet id (and, in MQTT 5, the properties): one return code per filter,
          // 0x80 and above a refusal.
          let at = start + 2
          if (opts.v5 !== undefined) {
            let propLen = 0
            let mult = 1
            for (;;) {
              const b = buf[at++] as number
              propLen += (b & 0x7f) * mult
              mult *= 128
              if ((b & 0x80) === 0) break
            }
            at += propLen
          }
          const want = typeof opts.subscribe?.topic === 'string' ? 1 : opts.subscribe?.topic.length ?? 1
          if (start + len - at !== want) return done(new Error(`${opts.clientId}: SUBACK has ${start + len - at} return codes for ${want} filters`))
          for (let i = at; i < start + len; i++) {
            if ((buf[i] as number) >= 0x80) return done(new Error(`${opts.clientId}: SUBSCRIBE refused (0x${(buf[i] as number).toString(16)}) for filter ${i - at + 1} of ${want}`))
          }
          done()
        }
      }
    })
    const keepalive = opts.keepalive ?? 60
    socket.cork()
    if (opts.v5 !== undefined) {
      socket.write(encodeConnect5(opts.clientId, keepalive, opts.v5.topicAliasMaximum))
      if (opts.subscribe) {
        const topics = typeof opts.subscribe.topic === 'string' ? [opts.subscribe.topic] : opts.subscribe.topic
        socket.write(encodeSubscribe5(1, topics, opts.subscribe.qos, opts.v5.subscriptionId))
      }
    } else {
      socket.write(encodeConnect(opts.clientId, keepalive, opts.clean ?? true))
      if (opts.subscribe) socket.write(encodeSubscribe(1, opts.subscribe.topic, opts.subscribe.qos))
    }
    socket.uncork()
    try {
      await withTimeout(handshake, opts.timeoutMs ?? 5000, `handshake of ${opts.clientId}`)
    } catch (err) {
      socket.destroy()
      throw err
    }
    return client
  }

  /** The polite way out: DISCONNECT, FIN, and wait (bounded) for the socket to close. */
  async disconnect(timeoutMs = 1000): Promise<void> {
    if (this.closed) return
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()))
    this.socket.end(DISCONNECT)
    try {
      await withTimeout(closed, timeoutMs, 'socket close after DISCONNECT')
    } catch {
      this.socket.destroy()
    }
  }

  destroy(): void {
    this.socket.destroy()
  }
}

/** Open many clients with bounded concurrency (a burst of thousands of SYNs overflows backlogs). */
export async function openMany(
  count: number,
  concurrency: number,
  make: (i: number) => OpenOptions,
): Promise<WireClient[]> {
  const clients: WireClient[] = []
  let next = 0
  let failure: unknown = null
  const worker = async (): Promise<void> => {
    while (next < count && failure === null) {
      const i = next++
      try {
        clients[i] = await WireClient.open(make(i))
      } catch (err) {
        failure = err
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
  if (failure !== null) {
    for (const c of clients) c?.destroy()
    throw failure
  }
  return clients
}

/**
 * Makes `client` a subscriber that calls `onPublish` for every PUBLISH and acknowledges every QoS 1
 * one, with one write per received chunk (the generator must stay cheaper than the broker).
 */
export function ackingSubscriber(client: WireClient, onPublish: () => void): void {
  const ids: number[] = []
  client.framer.wantBody = (first) => first >> 4 === PacketType.PUBLISH
  client.framer.onPacket = (first, buf, start) => {
    if (first >> 4 !== PacketType.PUBLISH) return
    onPublish()
    if (((first >> 1) & 3) === 0) return
    const topicLen = buf.readUInt16BE(start)
    ids.push(buf.readUInt16BE(start + 2 + topicLen))
  }
  client.afterChunk = () => {
    if (ids.length === 0) return
    const out = Buffer.allocUnsafe(ids.length * 4)
    for (let i = 0; i < ids.length; i++) encodePuback(ids[i] as number, out, i * 4)
    ids.length = 0
    client.socket.write(out)
  }
}
