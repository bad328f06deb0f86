import { accessSync, constants } from 'node:fs'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt'
import { Broker, tcp, type BrokerOptions, type Client, type DisconnectReason } from '../src/index.js'
import type { QoS } from '../src/protocol/packets.js'

export interface TestBroker {
  broker: Broker
  port: number
  /** Connects an `mqtt` client (protocol 3.1.1 unless told otherwise) and waits for CONNACK. */
  connect(options?: IClientOptions): Promise<MqttClient>
  /**
   * Like `connect`, but also returns the CONNACK and an `Inbox` listening from before CONNACK
   * (messages queued for a resumed session follow the CONNACK at once).
   */
  connectRecorded(options?: IClientOptions): Promise<RecordedClient>
  /** Opens a raw TCP socket to the broker. */
  raw(): Promise<RawClient>
  close(): Promise<void>
}

/** Starts a broker on an ephemeral loopback port. */
export async function startBroker(options: BrokerOptions = {}): Promise<TestBroker> {
  const broker = new Broker(options)
  const listener = await broker.listen(tcp({ port: 0, host: '127.0.0.1' }))
  const address = listener.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  const port = address.port
  const clients: MqttClient[] = []
  const raws: RawClient[] = []
  /** Connects an `mqtt` client; `beforeConnack` sees it before any packet has arrived. */
  const connectClient = async (opts: IClientOptions, beforeConnack?: (client: MqttClient) => void): Promise<[MqttClient, IConnackPacket]> => {
    const client = mqtt.connect({
      host: '127.0.0.1',
      port,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...opts,
    })
    clients.push(client)
    beforeConnack?.(client)
    const connack = await new Promise<IConnackPacket>((resolve, reject) => {
      client.once('connect', resolve)
      client.once('error', reject)
      client.once('close', () => reject(new Error('closed before CONNACK')))
    })
    client.removeAllListeners('error')
    client.on('error', () => {})
    return [client, connack]
  }
  return {
    broker,
    port,
    connect: async (opts = {}) => (await connectClient(opts))[0],
    connectRecorded: async (opts = {}) => {
      let inbox: Inbox | undefined
      const [client, connack] = await connectClient(opts, (c) => {
        inbox = new Inbox(c)
      })
      return { client, connack, inbox: inbox as Inbox }
    },
    raw: async () => {
      const r = await RawClient.connect(port)
      raws.push(r)
      return r
    },
    close: async () => {
      for (const c of clients) c.end(true)
      for (const r of raws) r.socket.destroy()
      await broker.close()
    },
  }
}

/** Wakes the callers of `until` whenever `notify` is called, so they can check their condition again. */
export class Waiters {
  private waiting: Array<() => void> = []

  notify(): void {
    const w = this.waiting
    this.waiting = []
    for (const f of w) f()
  }

  /**
   * Waits until `predicate` holds; fails with the message `failure()` gives after `ms`, or as soon
   * as `giveUp()` holds.
   */
  async until(predicate: () => boolean, ms: number, failure: () => string, giveUp: () => boolean = () => false): Promise<void> {
    const deadline = Date.now() + ms
    while (!predicate()) {
      const left = deadline - Date.now()
      if (left <= 0 || giveUp()) throw new Error(failure())
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiting.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }
}

/** The client end of any byte stream to the broker (a socket, an in-memory Duplex): collects everything the broker sends. */
export class RawStream {
  received = Buffer.alloc(0)
  closed = false
  private readonly waiters = new Waiters()

  constructor(readonly stream: Duplex) {
    stream.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk])
      this.waiters.notify()
    })
    stream.on('close', () => {
      this.closed = true
      this.waiters.notify()
    })
    stream.on('error', () => {})
  }

  write(bytes: Buffer | number[]): void {
    this.stream.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes))
  }

  /** Waits until `predicate` holds, or fails after `ms`. */
  until(predicate: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
    return this.waiters.until(predicate, ms, () => `timed out waiting for ${what}`)
  }

  /** Waits for the broker to close the connection. */
  waitClosed(ms = 3000): Promise<void> {
    return this.until(() => this.closed, ms, 'the broker to close the connection')
  }

  /** Waits for at least `n` bytes. */
  waitBytes(n: number, ms = 3000): Promise<void> {
    return this.until(() => this.received.length >= n, ms, `${n} bytes`)
  }
}

/** A raw TCP client for byte-level tests: collects everything the broker sends. */
export class RawClient extends RawStream {
  private constructor(readonly socket: net.Socket) {
    super(socket)
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawClient(socket)))
      socket.once('error', reject)
    })
  }
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
  /** The same messages as the PUBLISH packets the client decoded, for their payload bytes. */
  readonly packets: IPublishPacket[] = []
  private readonly waiters = new Waiters()

  constructor(client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, dup: packet.dup })
      this.packets.push(packet)
      this.waiters.notify()
    })
  }

  /** Waits until `predicate` holds over the messages received so far. */
  until(predicate: (messages: Received[]) => boolean, ms = 3000, what = 'messages'): Promise<void> {
    return this.waiters.until(
      () => predicate(this.messages),
      ms,
      () => `timed out waiting for ${what}; got ${JSON.stringify(this.messages.map((m) => `${m.topic}:${m.payload}`))}`,
    )
  }

  /** Waits for a message with this payload and returns it. */
  async waitFor(payload: string, ms = 3000): Promise<Received> {
    await this.until((m) => m.some((x) => x.payload === payload), ms, `a message ${JSON.stringify(payload)}`)
    return this.messages.find((x) => x.payload === payload) as Received
  }

  /** Waits for a message on this topic and returns the first one. */
  async waitForTopic(topic: string, ms = 3000): Promise<Received> {
    await this.until((m) => m.some((x) => x.topic === topic), ms, `a message on ${topic}`)
    return this.messages.find((x) => x.topic === topic) as Received
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

/** An `mqtt` client with its CONNACK and everything it received from the first byte on. */
export interface RecordedClient {
  client: MqttClient
  connack: IConnackPacket
  inbox: Inbox
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

/** Starts a broker, runs `body` with it and closes it, whatever happens. */
export async function withBroker(options: BrokerOptions, body: (b: TestBroker) => Promise<void>): Promise<void> {
  const b = await startBroker(options)
  try {
    await body(b)
  } finally {
    await b.close()
  }
}

/** Resolves when the broker reports that client `id` went away, with the reason. */
export function disconnected(b: { broker: Broker }, id: string, ms = 3000): Promise<[Client, DisconnectReason]> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${id} to disconnect`)), ms)
    const onDisconnect = (client: Client, reason: DisconnectReason): void => {
      if (client.id !== id) return
      clearTimeout(t)
      b.broker.off('clientDisconnect', onDisconnect)
      resolve([client, reason])
    }
    b.broker.on('clientDisconnect', onDisconnect)
  })
}

/** Ends an `mqtt` client with DISCONNECT and waits until the broker has seen it go. */
export async function leave(b: TestBroker, client: MqttClient): Promise<void> {
  const gone = disconnected(b, client.options.clientId as string)
  await client.endAsync()
  await gone
}

/** Waits for one event of `emitter`, with a timeout. */
export function once<T extends unknown[]>(
  emitter: { once(event: string, f: (...args: T) => void): unknown },
  event: string,
  ms = 3000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms)
    emitter.once(event, (...args: T) => {
      clearTimeout(t)
      resolve(args)
    })
  })
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * For tests that need an outside program: the reason to skip when it is missing, or undefined
 * when it is there. Under CI=true a missing program is an error, so CI cannot pass by skipping.
 */
export function skipWithout(program: string): string | undefined {
  const found = (process.env.PATH ?? '').split(':').some((dir) => {
    try {
      accessSync(`${dir}/${program}`, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
  if (found) return undefined
  if (process.env.CI === 'true') throw new Error(`${program} is required under CI=true but is not installed (see .ci/run)`)
  return `${program} is not installed`
}
