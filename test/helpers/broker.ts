/**
 * A broker for a test: started on an ephemeral loopback port, with `mqtt` and raw clients that
 * it closes with itself; `withBroker` closes it whatever the test does. Also `leave` and the
 * marker-message `fence`.
 */
import assert from 'node:assert/strict'
import type { Duplex } from 'node:stream'
import mqtt, { type IClientOptions, type IConnackPacket, type IDisconnectPacket, type MqttClient } from 'mqtt'
import { Broker, tcp, type BrokerOptions } from '../../src/index.js'
import type { ConnackPacket, ConnectPacket, ProtocolVersion, QoS } from '../../src/protocol/packets.js'
import { Inbox, type RecordedClient } from './mqtt.js'
import { hex } from './packets.js'
import { memoryPair, RawMqtt } from './raw.js'
import { disconnected } from './wait.js'

/** A broker that never answers must fail the test, not hang the run. */
export const TEST_TIMEOUT = 15_000

type RawConnectFields = Partial<Omit<ConnectPacket, 'type' | 'protocolVersion'>> & { clientId: string }

export interface TestBroker {
  broker: Broker
  port: number
  /** The protocol level clients speak unless told otherwise: 4 (3.1.1) from `startBroker`, 5 from `startV5Broker`. */
  protocolVersion: 3 | 4 | 5
  /** Connects an `mqtt` client and waits for CONNACK. */
  connect(options?: IClientOptions): Promise<MqttClient>
  /**
   * Like `connect`, but also returns the CONNACK and an `Inbox` listening from before CONNACK
   * (messages queued for a resumed session follow the CONNACK at once).
   */
  connectRecorded(options?: IClientOptions): Promise<RecordedClient>
  /** `connectRecorded`, under the name the MQTT 5 tests use. */
  mqtt(options?: IClientOptions): Promise<RecordedClient>
  /** Opens a raw connection (no CONNECT sent yet). */
  raw(version?: ProtocolVersion): Promise<RawMqtt>
  /**
   * A raw client over an in-memory pair handed to `broker.handle`: unlike a TCP connection, the
   * broker holds its end (`brokerSide`) as soon as this returns, so its connect timer is running.
   */
  rawInMemory(version?: ProtocolVersion): { raw: RawMqtt; brokerSide: Duplex }
  /** Opens a raw connection and sends CONNECT; asserts the CONNACK accepts. */
  rawConnect(fields: RawConnectFields, version?: ProtocolVersion): Promise<{ raw: RawMqtt; connack: ConnackPacket }>
  close(): Promise<void>
}

/** The name the MQTT 5 tests use for the same thing. */
export type V5Broker = TestBroker

/** Starts a broker on an ephemeral loopback port ($SYS off unless `options.sys` says); its clients speak `protocolVersion` (default 4) unless told otherwise. */
export async function startBroker(options: BrokerOptions = {}, protocolVersion: 3 | 4 | 5 = 4): Promise<TestBroker> {
  // The $SYS tree is off unless a test asks for it: tests watching `$SYS/#` see only their own messages.
  const broker = new Broker({ sys: { interval: 0 }, ...options })
  const listener = await broker.listen(tcp({ port: 0, host: '127.0.0.1' }))
  const address = listener.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  const port = address.port
  const clients: MqttClient[] = []
  const raws: RawMqtt[] = []
  /** Connects an `mqtt` client; with `record`, an Inbox keeps what it receives from the first byte on. */
  const connectClient = async (opts: IClientOptions, record: boolean): Promise<{ client: MqttClient; connack: IConnackPacket; inbox: Inbox | undefined }> => {
    const client = mqtt.connect({
      host: '127.0.0.1',
      port,
      protocolVersion,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...opts,
    })
    clients.push(client)
    // Only when asked: an Inbox keeps every message, which a flood test cannot afford.
    const inbox = record ? new Inbox(client) : undefined
    const connack = await new Promise<IConnackPacket>((resolve, reject) => {
      client.once('connect', resolve)
      client.once('error', reject)
      client.once('close', () => reject(new Error('closed before CONNACK')))
    })
    client.removeAllListeners('error')
    client.on('error', () => {})
    return { client, connack, inbox }
  }
  const connectRecorded = async (opts: IClientOptions = {}): Promise<RecordedClient> => {
    const { client, connack, inbox } = await connectClient(opts, true)
    return { client, connack, inbox: inbox as Inbox }
  }
  const raw = async (version: ProtocolVersion = protocolVersion): Promise<RawMqtt> => {
    const r = await RawMqtt.tcp(port, version)
    raws.push(r)
    return r
  }
  return {
    broker,
    port,
    protocolVersion,
    connect: async (opts = {}) => (await connectClient(opts, false)).client,
    connectRecorded,
    mqtt: connectRecorded,
    raw,
    rawInMemory: (version = protocolVersion) => {
      const [brokerSide, clientSide] = memoryPair()
      broker.handle(brokerSide)
      const r = new RawMqtt(clientSide, version)
      raws.push(r)
      return { raw: r, brokerSide }
    },
    rawConnect: async (fields, version = protocolVersion) => {
      const r = await raw(version)
      const connack = await r.connect(fields)
      assert.equal(hex(connack.returnCode), hex(0), 'CONNACK reason code')
      return { raw: r, connack }
    },
    close: async () => {
      for (const c of clients) c.end(true)
      for (const r of raws) r.destroy()
      await broker.close()
    },
  }
}

/** `startBroker` with MQTT 5 clients by default. */
export function startV5Broker(options: BrokerOptions = {}): Promise<TestBroker> {
  return startBroker(options, 5)
}

/** Starts a broker, runs `body` with it and closes it, whatever happens. */
export async function withBroker(options: BrokerOptions, body: (b: TestBroker) => Promise<void>, protocolVersion: 3 | 4 | 5 = 4): Promise<void> {
  const b = await startBroker(options, protocolVersion)
  try {
    await body(b)
  } finally {
    await b.close()
  }
}

/** `withBroker` with MQTT 5 clients by default. */
export function withV5Broker(options: BrokerOptions, body: (b: TestBroker) => Promise<void>): Promise<void> {
  return withBroker(options, body, 5)
}

/** Ends an `mqtt` client (with DISCONNECT `packet` fields when given) and waits until the broker has seen it go. */
export async function leave(b: { broker: Broker }, client: MqttClient, packet?: Partial<IDisconnectPacket>): Promise<void> {
  const left = disconnected(b, client.options.clientId as string)
  await (packet === undefined ? client.endAsync() : client.endAsync(false, packet))
  await left
}

/** What a fence waits at: an `mqtt` client's Inbox, or a raw client. */
type FenceTarget = { waitFor(payload: string): Promise<unknown> } | RawMqtt

let fences = 0

/**
 * The fence for "nothing more reached this subscriber": publishes a `marker` on `topic` (which
 * the subscriber must be subscribed to) from a fresh raw client, and waits until the subscriber
 * has it. The broker delivers one publisher's messages to a subscriber in order, and whatever it
 * sent the subscriber before it routed the marker is ahead of it on the connection, so anything
 * routed to the subscriber before the marker has arrived by then. Use `qos` 2 for an `mqtt` client
 * subscribed at QoS 2 (it emits QoS 2 messages only at PUBREL).
 */
export async function fence(b: TestBroker, topic: string, target: FenceTarget, marker = 'fence', qos: QoS = 1): Promise<void> {
  const { raw: pub } = await b.rawConnect({ clientId: `fence-${++fences}` }, 4)
  try {
    pub.publish(topic, marker, qos, { packetId: 1 })
    if (qos === 1) await pub.take('puback')
    if (qos === 2) {
      await pub.take('pubrec')
      pub.send({ type: 'pubrel', packetId: 1 })
      await pub.take('pubcomp')
    }
    if (target instanceof RawMqtt) await target.takePublish(marker)
    else await target.waitFor(marker)
  } finally {
    pub.destroy()
  }
}

/** `fence` at a raw client. */
export function rawFence(b: TestBroker, topic: string, raw: RawMqtt, marker = 'fence'): Promise<void> {
  return fence(b, topic, raw, marker)
}
