/**
 * A broker restarted on the same persistence adapter resumes where the previous one stopped:
 * persistent sessions (subscriptions, queued and in-flight messages) and retained messages.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt'
import { MemoryPersistence, type Client, type DisconnectReason } from '../../src/index.js'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { ConnackPacket, Packet } from '../../src/protocol/packets.js'
import { startBroker, type RawClient, type TestBroker } from '../helpers.js'

/** The packet shape of a type name (PUBACK..PUBCOMP share one shape whose `type` is a union). */
type PacketOf<T extends Packet['type']> = Packet extends infer P ? (P extends { type: infer U } ? (T extends U ? P : never) : never) : never

interface Received {
  topic: string
  payload: string
  qos: number
  retain: boolean
}

/** An `mqtt` client that records its CONNACK and every message from the first byte on. */
async function connectRecorded(
  b: TestBroker,
  options: IClientOptions,
): Promise<{ client: MqttClient; connack: IConnackPacket; messages: Received[]; waitCount(n: number): Promise<void> }> {
  const client = mqtt.connect({ host: '127.0.0.1', port: b.port, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...options })
  const messages: Received[] = []
  let waiters: Array<() => void> = []
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain })
    const w = waiters
    waiters = []
    for (const f of w) f()
  })
  const connack = await new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve)
    client.once('error', reject)
  })
  client.removeAllListeners('error')
  client.on('error', () => {})
  const waitCount = async (n: number): Promise<void> => {
    const deadline = Date.now() + 3000
    while (messages.length < n) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${n} messages; got ${JSON.stringify(messages)}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }
  return { client, connack, messages, waitCount }
}

function disconnected(b: TestBroker, id: string): Promise<[Client, DisconnectReason]> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${id} to disconnect`)), 3000)
    const onDisconnect = (client: Client, reason: DisconnectReason): void => {
      if (client.id !== id) return
      clearTimeout(t)
      b.broker.off('clientDisconnect', onDisconnect)
      resolve([client, reason])
    }
    b.broker.on('clientDisconnect', onDisconnect)
  })
}

/** A raw 3.1.1 client reading the broker's packets in order. */
class RawPeer {
  private readonly inbox: Packet[] = []
  private readonly decoder = new PacketDecoder((p) => this.inbox.push(p))
  private consumed = 0

  private constructor(readonly raw: RawClient) {}

  static async connect(b: TestBroker, clientId: string): Promise<{ peer: RawPeer; connack: ConnackPacket }> {
    const peer = new RawPeer(await b.raw())
    peer.send({ type: 'connect', protocolName: 'MQTT', protocolVersion: 4, cleanSession: false, keepAlive: 0, clientId })
    const connack = await peer.take('connack')
    assert.equal(connack.returnCode, 0)
    return { peer, connack }
  }

  send(packet: Packet): void {
    this.raw.write(encodePacket(packet, 4))
  }

  async take<T extends Packet['type']>(type: T): Promise<PacketOf<T>> {
    const pending = (): number => {
      const received = this.raw.received
      if (received.length > this.consumed) {
        const chunk = received.subarray(this.consumed)
        this.consumed = received.length
        this.decoder.push(chunk)
      }
      return this.inbox.length
    }
    await this.raw.until(() => pending() > 0 || this.raw.closed, 3000, type.toUpperCase())
    const packet = this.inbox.shift()
    if (packet === undefined) throw new Error(`connection closed while waiting for ${type.toUpperCase()}`)
    assert.equal(packet.type, type, `expected ${type.toUpperCase()}, got ${JSON.stringify(packet)}`)
    return packet as PacketOf<T>
  }
}

describe('restart on the same persistence', () => {
  it('restores a persistent session with its queued messages, and the retained messages', async () => {
    // [MQTT-3.1.2-4] the session state is kept and resumed ("MUST resume communications with the
    // Client based on state from the current Session"); [MQTT-3.1.2-5] with the QoS 1/2 messages
    // stored while it was away; [MQTT-3.2.2-2] session present 1. Retained messages are kept per
    // topic [MQTT-3.3.1-5] and sent to new subscribers with RETAIN 1 [MQTT-3.3.1-8].
    const persistence = new MemoryPersistence()

    const first = await startBroker({ persistence })
    try {
      const sub = await connectRecorded(first, { clientId: 'survivor', clean: false })
      await sub.client.subscribeAsync('news/+', { qos: 1 })
      const gone = disconnected(first, 'survivor')
      await sub.client.endAsync()
      await gone

      const pub = await first.connect({ clientId: 'publisher' })
      await pub.publishAsync('kept/topic', 'retained across restarts', { qos: 1, retain: true })
      for (const n of [1, 2, 3]) await pub.publishAsync(`news/${n}`, `queued ${n}`, { qos: 1 })
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence })
    try {
      const back = await connectRecorded(second, { clientId: 'survivor', clean: false })
      assert.equal(back.connack.sessionPresent, true)
      await back.waitCount(3)
      assert.deepEqual(
        back.messages.map((m) => [m.topic, m.payload, m.qos]),
        [
          ['news/1', 'queued 1', 1],
          ['news/2', 'queued 2', 1],
          ['news/3', 'queued 3', 1],
        ],
      )
      // The restored subscription routes new messages without re-subscribing.
      await second.broker.publish({ topic: 'news/4', payload: 'live', qos: 1 })
      await back.waitCount(4)
      assert.deepEqual(back.messages[3], { topic: 'news/4', payload: 'live', qos: 1, retain: false })

      const late = await connectRecorded(second, { clientId: 'late' })
      await late.client.subscribeAsync('kept/#', { qos: 1 })
      await late.waitCount(1)
      assert.deepEqual(late.messages, [{ topic: 'kept/topic', payload: 'retained across restarts', qos: 1, retain: true }])
      await back.client.endAsync()
      await late.client.endAsync()
    } finally {
      await second.close()
    }
  })

  it('resends an unacknowledged QoS 1 message with DUP and its packet identifier after a restart', async () => {
    // [MQTT-4.4.0-1] unacknowledged PUBLISH packets are re-sent with their original identifiers on
    // reconnect with clean session 0; [MQTT-3.3.1-1] DUP is 1 on a redelivery.
    const persistence = new MemoryPersistence()

    let original: PacketOf<'publish'>
    const first = await startBroker({ persistence })
    try {
      const { peer } = await RawPeer.connect(first, 'unacked')
      peer.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'inflight/t', qos: 1 }] })
      await peer.take('suback')
      await first.broker.publish({ topic: 'inflight/t', payload: 'never acked', qos: 1 })
      original = await peer.take('publish')
      assert.equal(original.dup, false)
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence })
    try {
      const { peer, connack } = await RawPeer.connect(second, 'unacked')
      assert.equal(connack.sessionPresent, true)
      const resent = await peer.take('publish')
      assert.equal(resent.dup, true)
      assert.equal(resent.packetId, original.packetId)
      assert.equal(resent.topic, 'inflight/t')
      assert.equal(resent.payload.toString(), 'never acked')
    } finally {
      await second.close()
    }
  })

  it('forgets a session that ended clean before the restart', async () => {
    // [MQTT-3.1.2-6] a clean session's state lasts only as long as the network connection.
    const persistence = new MemoryPersistence()
    const first = await startBroker({ persistence })
    try {
      const once = await connectRecorded(first, { clientId: 'ephemeral', clean: true })
      await once.client.subscribeAsync('x/#', { qos: 1 })
      const gone = disconnected(first, 'ephemeral')
      await once.client.endAsync()
      await gone
    } finally {
      await first.close()
    }
    assert.deepEqual(await persistence.loadSessions(), [])

    const second = await startBroker({ persistence })
    try {
      const again = await connectRecorded(second, { clientId: 'ephemeral', clean: false })
      assert.equal(again.connack.sessionPresent, false)
      await again.client.endAsync()
    } finally {
      await second.close()
    }
  })

  it('publishes the will of a client that was connected when the broker stopped without close()', async () => {
    // [MQTT-3.1.2-8] the will MUST be published when the network connection is closed without
    // DISCONNECT; a crash closes it, and SessionRecord.will exists "so a restarted broker can still
    // publish it". The crash is simulated by starting the second broker on a copy of what the first
    // had persisted while the client was still connected.
    const persistence = new MemoryPersistence()
    const snapshot = new MemoryPersistence()
    const first = await startBroker({ persistence })
    try {
      await connectRecorded(first, {
        clientId: 'crashed',
        clean: false,
        will: { topic: 'wills/crashed', payload: Buffer.from('gone with the broker'), qos: 1, retain: true },
      })
      const deadline = Date.now() + 3000
      let saved = persistence.loadSessions().find((r) => r.clientId === 'crashed')
      while (saved?.will === undefined) {
        if (Date.now() > deadline) throw new Error('the session with its will was never saved')
        await new Promise((resolve) => setImmediate(resolve))
        saved = persistence.loadSessions().find((r) => r.clientId === 'crashed')
      }
      snapshot.saveSession(saved)
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence: snapshot })
    try {
      const late = await connectRecorded(second, { clientId: 'late' })
      await late.client.subscribeAsync('wills/#', { qos: 1 })
      await late.waitCount(1)
      assert.deepEqual(late.messages, [{ topic: 'wills/crashed', payload: 'gone with the broker', qos: 1, retain: true }])
      await late.client.endAsync()
    } finally {
      await second.close()
    }
  })
})
