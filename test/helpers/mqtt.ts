/** Helpers for `mqtt` (MQTT.js) clients: what they receive, SUBACK codes, and a PINGREQ fence. */
import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient, type Packet as MqttPacket } from 'mqtt'
import type { QoS } from '../../src/protocol/packets.js'
import { DEFAULT_WAIT_MS, Waiters } from './wait.js'

/** What an `mqtt` client saw of one received PUBLISH. */
export interface Received {
  topic: string
  payload: string
  qos: number
  retain: boolean
  dup: boolean
  /**
   * The PUBLISH packet itself (properties, payload bytes). Not enumerable, so that a Received
   * still compares (deepEqual) as the five fields above.
   */
  readonly packet: IPublishPacket
}

/** Collects the messages an `mqtt` client receives, and waits for some of them. */
export class Inbox {
  readonly messages: Received[] = []
  /** The same messages as the PUBLISH packets the client decoded, for their payload bytes. */
  readonly packets: IPublishPacket[] = []
  private readonly waiters = new Waiters()

  constructor(client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      const received = { topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, dup: packet.dup }
      Object.defineProperty(received, 'packet', { value: packet, enumerable: false })
      this.messages.push(received as Received)
      this.packets.push(packet)
      this.waiters.notify()
    })
  }

  /** Waits until `predicate` holds over the messages received so far. */
  until(predicate: (messages: Received[]) => boolean, ms: number = DEFAULT_WAIT_MS, what = 'messages'): Promise<void> {
    return this.waiters.until(() => predicate(this.messages), ms, () => `${what}; got ${this.summary()}`)
  }

  /** Waits for a message with this payload and returns it. */
  async waitFor(payload: string, ms: number = DEFAULT_WAIT_MS): Promise<Received> {
    await this.until((m) => m.some((x) => x.payload === payload), ms, `a message ${JSON.stringify(payload)}`)
    return this.messages.find((x) => x.payload === payload) as Received
  }

  /** Waits for a message on this topic and returns the first one. */
  async waitForTopic(topic: string, ms: number = DEFAULT_WAIT_MS): Promise<Received> {
    await this.until((m) => m.some((x) => x.topic === topic), ms, `a message on ${topic}`)
    return this.messages.find((x) => x.topic === topic) as Received
  }

  /** Waits for `n` messages in all. */
  waitCount(n: number, ms: number = DEFAULT_WAIT_MS): Promise<void> {
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

  /** topic:payload of every message, for failure messages. */
  summary(): string {
    return JSON.stringify(this.messages.map((m) => `${m.topic}:${m.payload}`))
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

/**
 * The fence for an `mqtt` client: PINGREQ, then its PINGRESP. The broker answers in order, and
 * the client emits a QoS 0 or 1 message as it reads the PUBLISH, so by then every such message
 * the broker sent it before has been emitted. (A QoS 2 message is emitted only at PUBREL, a round
 * trip later: for those, fence with a QoS 2 marker message instead.)
 */
export async function ping(client: MqttClient, ms: number = DEFAULT_WAIT_MS): Promise<void> {
  const waiters = new Waiters()
  let answered = false
  const onPacket = (packet: MqttPacket): void => {
    if (packet.cmd !== 'pingresp') return
    answered = true
    waiters.notify()
  }
  client.on('packetreceive', onPacket)
  try {
    client.sendPing()
    await waiters.until(() => answered, ms, 'PINGRESP')
  } finally {
    client.off('packetreceive', onPacket)
  }
}

/** The CONNACK code (3.1.1 return code, or MQTT 5 reason code) an `mqtt` client connecting to `port` gets; rejects if it closes first. */
export async function connackCode(port: number, options: IClientOptions = {}): Promise<number> {
  const client = mqtt.connect({ host: '127.0.0.1', port, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...options })
  client.on('error', () => {})
  try {
    return await new Promise<number>((resolve, reject) => {
      client.on('packetreceive', (packet) => {
        if (packet.cmd !== 'connack') return
        const connack = packet as IConnackPacket
        resolve(connack.reasonCode ?? connack.returnCode ?? -1)
      })
      client.once('close', () => reject(new Error('closed before CONNACK')))
    })
  } finally {
    client.end(true)
  }
}
