/**
 * Helpers for the MQTT 5 integration tests: a raw MQTT 5 (or 3.1.1) client that writes packets
 * with the broker's own encoder and reads the broker's answers with its own decoder, and a thin
 * wrapper over `startBroker` that also tracks `mqtt` clients speaking protocol level 5.
 *
 * Self-contained on purpose: only `startBroker`, `once` and `delay` come from ../helpers.ts.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import mqtt, { type IClientOptions, type IConnackPacket, type IDisconnectPacket, type IPublishPacket, type MqttClient } from 'mqtt'
import type { Broker, BrokerOptions } from '../../src/index.js'
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
import { startBroker } from '../helpers.js'

/** A broker that never answers must fail the test, not hang the run. */
export const TEST_TIMEOUT = 15_000

/** Polls `predicate` until it holds; fails with `what` after `ms`. */
export async function until(predicate: () => boolean, ms = 3000, what: string | (() => string) = 'condition'): Promise<void> {
  const deadline = Date.now() + ms
  while (!predicate()) {
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${typeof what === 'string' ? what : what()}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** The packet interface(s) whose `type` can be `T` (AckPacket covers four types, so Extract won't do). */
export type PacketOf<T extends Packet['type']> = Packet extends infer P ? (P extends { type: infer U } ? (T extends U ? P : never) : never) : never

/** A CONNECT with sensible defaults: MQTT 5, clean start, keep alive 0. */
export function connectPacket(fields: Partial<Omit<ConnectPacket, 'type'>> & { clientId: string }): ConnectPacket {
  return { type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanSession: true, keepAlive: 0, ...fields }
}

/** A raw client: sends packets encoded for `version`, decodes and queues what the broker sends. */
export class RawV5 {
  /** Packets received and not taken yet, in arrival order. */
  readonly inbox: Packet[] = []
  /** Every packet received, taken or not, in arrival order. */
  readonly all: Packet[] = []
  closed = false
  private readonly decoder: PacketDecoder
  private decodeError: Error | undefined

  private constructor(
    readonly socket: net.Socket,
    readonly version: ProtocolVersion,
  ) {
    this.decoder = new PacketDecoder((p) => {
      this.inbox.push(p)
      this.all.push(p)
    })
    this.decoder.protocolVersion = version
    socket.on('data', (chunk: Buffer) => {
      if (this.decodeError) return
      try {
        this.decoder.push(chunk)
      } catch (error) {
        this.decodeError = error as Error
      }
    })
    socket.on('close', () => {
      this.closed = true
    })
    socket.on('error', () => {})
  }

  static open(port: number, version: ProtocolVersion = 5): Promise<RawV5> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawV5(socket, version)))
      socket.once('error', reject)
    })
  }

  send(packet: Packet): void {
    this.socket.write(encodePacket(packet, this.version))
  }

  /** Sends CONNECT and returns the broker's first packet, which must be a CONNACK. */
  async connect(fields: Partial<Omit<ConnectPacket, 'type' | 'protocolVersion'>> & { clientId: string }): Promise<ConnackPacket> {
    this.send(connectPacket({ ...fields, protocolVersion: this.version }))
    return this.next('connack')
  }

  publish(
    topic: string,
    payload: string | Buffer,
    qos: QoS = 0,
    opts: { packetId?: number; retain?: boolean; dup?: boolean; properties?: Properties } = {},
  ): void {
    const packet: PublishPacket = {
      type: 'publish',
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      qos,
      retain: opts.retain ?? false,
      dup: opts.dup ?? false,
      packetId: qos === 0 ? 0 : (opts.packetId ?? 1),
    }
    if (opts.properties !== undefined) packet.properties = opts.properties
    this.send(packet)
  }

  /** Sends SUBSCRIBE and returns its SUBACK. */
  async subscribe(subscriptions: Subscription[], properties?: Properties, packetId = 1): Promise<SubackPacket> {
    this.send(properties ? { type: 'subscribe', packetId, subscriptions, properties } : { type: 'subscribe', packetId, subscriptions })
    return this.take('suback', (p) => p.packetId === packetId)
  }

  private check(): void {
    if (this.decodeError) throw this.decodeError
  }

  /** Waits for the first not-yet-taken packet of `type` matching `where`, removes it from the inbox and returns it. */
  async take<T extends Packet['type']>(type: T, where: (p: PacketOf<T>) => boolean = () => true, ms = 3000): Promise<PacketOf<T>> {
    let found = -1
    await until(
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
  async next<T extends Packet['type']>(type: T, ms = 3000): Promise<PacketOf<T>> {
    await until(
      () => {
        this.check()
        return this.inbox.length > 0 || this.closed
      },
      ms,
      `a ${type.toUpperCase()} from the broker`,
    )
    const packet = this.inbox.shift()
    if (packet === undefined) throw new Error(`connection closed while waiting for ${type.toUpperCase()}`)
    assert.equal(packet.type, type, `expected ${type.toUpperCase()}, got ${describePacket(packet)}`)
    return packet as PacketOf<T>
  }

  /** Waits for a PUBLISH with this payload. */
  takePublish(payload: string, ms = 3000): Promise<PublishPacket> {
    return this.take('publish', (p) => p.payload.toString() === payload, ms)
  }

  /** PUBLISHes received so far (taken or not). */
  publishes(): PublishPacket[] {
    this.check()
    return this.all.filter((p): p is PublishPacket => p.type === 'publish')
  }

  /** Waits for the broker to close the connection. */
  waitClosed(ms = 3000): Promise<void> {
    return until(() => this.closed, ms, 'the broker to close the connection')
  }

  /** Expects the broker to send DISCONNECT with `reasonCode` and then close the connection. */
  async expectDisconnect(reasonCode: number, ms = 3000): Promise<PacketOf<'disconnect'>> {
    const packet = await this.take('disconnect', () => true, ms)
    assert.equal(hex(packet.reasonCode ?? 0), hex(reasonCode), 'DISCONNECT reason code')
    await this.waitClosed(ms)
    return packet
  }

  destroy(): void {
    this.socket.destroy()
  }

  describe(): string {
    return `[${this.inbox.map(describePacket).join(', ')}]`
  }
}

export function hex(n: number | undefined): string {
  return n === undefined ? 'undefined' : `0x${n.toString(16).padStart(2, '0')}`
}

function describePacket(p: Packet): string {
  const rc = 'reasonCode' in p ? ` rc=${hex(p.reasonCode)}` : 'returnCode' in p ? ` rc=${hex(p.returnCode)}` : ''
  const extra = p.type === 'publish' ? ` ${p.topic}:${p.payload.toString()}` : ''
  return `${p.type.toUpperCase()}${rc}${extra}`
}

/** What an `mqtt` client saw of one received PUBLISH. */
export interface Got {
  topic: string
  payload: string
  packet: IPublishPacket
}

/** Collects the messages an `mqtt` client receives. */
export class Collector {
  readonly messages: Got[] = []

  constructor(client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, payload: payload.toString(), packet })
    })
  }

  /** Waits for a message with this payload and returns it. */
  async waitFor(payload: string, ms = 3000): Promise<Got> {
    await until(() => this.messages.some((m) => m.payload === payload), ms, () => `a message ${JSON.stringify(payload)}; got ${this.summary()}`)
    return this.messages.find((m) => m.payload === payload) as Got
  }

  withPayload(payload: string): Got[] {
    return this.messages.filter((m) => m.payload === payload)
  }

  summary(): string {
    return JSON.stringify(this.messages.map((m) => `${m.topic}:${m.payload}`))
  }
}

export interface MqttConnection {
  client: MqttClient
  connack: IConnackPacket
  inbox: Collector
}

type Started = Awaited<ReturnType<typeof startBroker>>

/** A broker on an ephemeral port, with `mqtt` and raw clients that it cleans up. */
export interface V5Broker {
  broker: Broker
  port: number
  /** Connects an `mqtt` client (protocol 5 unless told otherwise) and waits for CONNACK; collects messages from the first byte. */
  mqtt(options?: IClientOptions): Promise<MqttConnection>
  /** Opens a raw socket (protocol 5 unless told otherwise). */
  raw(version?: ProtocolVersion): Promise<RawV5>
  /** Opens a raw socket and sends CONNECT; asserts the CONNACK accepts. */
  rawConnect(fields: Partial<Omit<ConnectPacket, 'type' | 'protocolVersion'>> & { clientId: string }, version?: ProtocolVersion): Promise<{ raw: RawV5; connack: ConnackPacket }>
  close(): Promise<void>
}

export async function startV5Broker(options: BrokerOptions = {}): Promise<V5Broker> {
  const started: Started = await startBroker(options)
  const clients: MqttClient[] = []
  const raws: RawV5[] = []
  const raw = async (version: ProtocolVersion = 5): Promise<RawV5> => {
    const r = await RawV5.open(started.port, version)
    raws.push(r)
    return r
  }
  return {
    broker: started.broker,
    port: started.port,
    mqtt: async (opts = {}) => {
      const client = mqtt.connect({
        host: '127.0.0.1',
        port: started.port,
        protocolVersion: 5,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        ...opts,
      })
      clients.push(client)
      const inbox = new Collector(client)
      const connack = await new Promise<IConnackPacket>((resolve, reject) => {
        client.once('connect', resolve)
        client.once('error', reject)
        client.once('close', () => reject(new Error('closed before CONNACK')))
      })
      client.removeAllListeners('error')
      client.on('error', () => {})
      return { client, connack, inbox }
    },
    raw,
    rawConnect: async (fields, version = 5) => {
      const r = await raw(version)
      const connack = await r.connect(fields)
      assert.equal(hex(connack.returnCode), hex(0), 'CONNACK reason code')
      return { raw: r, connack }
    },
    close: async () => {
      for (const c of clients) c.end(true)
      for (const r of raws) r.destroy()
      await started.close()
    },
  }
}

/** Starts a broker, runs `body` with it and closes it, whatever happens. */
export async function withV5Broker(options: BrokerOptions, body: (b: V5Broker) => Promise<void>): Promise<void> {
  const b = await startV5Broker(options)
  try {
    await body(b)
  } finally {
    await b.close()
  }
}

/** Resolves when the broker reports that client `id` went away. */
export function gone(b: { broker: Broker }, id: string, ms = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${id} to disconnect`)), ms)
    const onDisconnect = (client: { id: string }, reason: string): void => {
      if (client.id !== id) return
      clearTimeout(t)
      b.broker.off('clientDisconnect', onDisconnect)
      resolve(reason)
    }
    b.broker.on('clientDisconnect', onDisconnect)
  })
}

/** Ends an `mqtt` client (DISCONNECT with `packet` fields when given) and waits until the broker has seen it go. */
export async function leave(b: { broker: Broker }, client: MqttClient, packet?: Partial<IDisconnectPacket>): Promise<void> {
  const left = gone(b, client.options.clientId as string)
  await (packet === undefined ? client.endAsync() : client.endAsync(false, packet))
  await left
}

/**
 * Publishes a marker on `topic` from a fresh client and waits until `inbox` has it: whatever the
 * broker routed to that inbox before the marker has arrived by then (one connection keeps order).
 */
export async function fence(b: V5Broker, topic: string, inbox: { waitFor(payload: string): Promise<unknown> }, marker = 'fence'): Promise<void> {
  const { client } = await b.mqtt({ clientId: `fence-${Math.random().toString(36).slice(2)}` })
  await client.publishAsync(topic, marker, { qos: 1 })
  await inbox.waitFor(marker)
  client.end(true)
}
