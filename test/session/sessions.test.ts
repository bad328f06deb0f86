/**
 * Sessions (MQTT 3.1.1 section 3.1.2.4 and 4.1): what outlives a connection. Persistent sessions
 * keep subscriptions and queue QoS 1/2 messages while the client is away, in-flight messages are
 * resent with DUP on reconnect, a clean session discards the old one, and a second connection
 * with the same identifier takes over.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt'
import type { Client, DisconnectReason } from '../../src/index.js'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { ConnackPacket, Packet, ProtocolVersion } from '../../src/protocol/packets.js'
import { delay, once, startBroker, type RawClient, type TestBroker } from '../helpers.js'

/** The packet shape of a type name (PUBACK..PUBCOMP share one shape whose `type` is a union). */
type PacketOf<T extends Packet['type']> = Packet extends infer P ? (P extends { type: infer U } ? (T extends U ? P : never) : never) : never

interface Received {
  topic: string
  payload: string
  qos: number
  retain: boolean
  dup: boolean
}

/** An `mqtt` client whose CONNACK and every received message are recorded from the first byte. */
interface Recorded {
  client: MqttClient
  connack: IConnackPacket
  messages: Received[]
  /** Waits until `n` messages have arrived in all. */
  waitCount(n: number, ms?: number): Promise<void>
}

async function connectRecorded(b: TestBroker, options: IClientOptions): Promise<Recorded> {
  const client = mqtt.connect({
    host: '127.0.0.1',
    port: b.port,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    ...options,
  })
  const messages: Received[] = []
  let waiters: Array<() => void> = []
  // Listening before CONNACK: queued messages follow it immediately.
  client.on('message', (topic, payload, packet) => {
    messages.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, dup: packet.dup })
    const w = waiters
    waiters = []
    for (const f of w) f()
  })
  const connack = await new Promise<IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve)
    client.once('error', reject)
    client.once('close', () => reject(new Error('closed before CONNACK')))
  })
  client.removeAllListeners('error')
  client.on('error', () => {})
  const waitCount = async (n: number, ms = 3000): Promise<void> => {
    const deadline = Date.now() + ms
    while (messages.length < n) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${n} messages; got ${JSON.stringify(messages.map((m) => m.payload))}`)
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

/** Resolves when the broker reports that client `id` went away, with the reason. */
function disconnected(b: TestBroker, id: string, ms = 3000): Promise<[Client, DisconnectReason]> {
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

/** Sends DISCONNECT and waits until the broker has ended the connection. */
async function leave(b: TestBroker, r: Recorded): Promise<void> {
  const id = r.client.options.clientId as string
  const gone = disconnected(b, id)
  await r.client.endAsync()
  await gone
}

/** A raw MQTT client: packets built with the broker's encoder, replies read with its decoder. */
class RawPeer {
  private readonly inbox: Packet[] = []
  private readonly decoder = new PacketDecoder((p) => this.inbox.push(p))
  private consumed = 0

  constructor(
    readonly raw: RawClient,
    readonly version: ProtocolVersion = 4,
  ) {}

  static async connect(
    b: TestBroker,
    clientId: string,
    cleanSession: boolean,
    version: 3 | 4 = 4,
  ): Promise<{ peer: RawPeer; connack: ConnackPacket }> {
    const peer = new RawPeer(await b.raw(), version)
    const protocolName = version === 3 ? 'MQIsdp' : 'MQTT'
    peer.send({ type: 'connect', protocolName, protocolVersion: version, cleanSession, keepAlive: 0, clientId })
    const connack = await peer.take('connack')
    assert.equal(connack.returnCode, 0)
    return { peer, connack }
  }

  send(packet: Packet): void {
    this.raw.write(encodePacket(packet, this.version))
  }

  /** Packets received and not taken yet. */
  pending(): Packet[] {
    const received = this.raw.received
    if (received.length > this.consumed) {
      const chunk = received.subarray(this.consumed)
      this.consumed = received.length
      this.decoder.push(chunk)
    }
    return this.inbox
  }

  /** Waits for the next packet, which must be of `type`, and takes it. */
  async take<T extends Packet['type']>(type: T, ms = 3000): Promise<PacketOf<T>> {
    await this.raw.until(() => this.pending().length > 0 || this.raw.closed, ms, `a ${type.toUpperCase()}`)
    const packet = this.inbox.shift()
    if (packet === undefined) throw new Error(`connection closed while waiting for ${type.toUpperCase()}`)
    assert.equal(packet.type, type, `expected ${type.toUpperCase()}, got ${JSON.stringify(packet)}`)
    return packet as PacketOf<T>
  }

  async subscribe(topicFilter: string, qos: 0 | 1 | 2, packetId = 1): Promise<void> {
    this.send({ type: 'subscribe', packetId, subscriptions: [{ topicFilter, qos }] })
    const suback = await this.take('suback')
    assert.deepEqual(suback.reasonCodes, [qos])
  }

  /** Drops the TCP connection without DISCONNECT and waits until the broker has noticed. */
  async drop(b: TestBroker, clientId: string): Promise<void> {
    const gone = disconnected(b, clientId)
    this.raw.socket.destroy()
    await gone
  }
}

describe('persistent sessions (clean session 0)', () => {
  it('keep their subscriptions across a reconnect: session present 1, messages flow without re-subscribing', async () => {
    // [MQTT-3.1.2-4] the server resumes the session from the stored state;
    // [MQTT-3.2.2-2] session present is 1 when it has a stored session for the client.
    const b = await startBroker()
    try {
      const first = await connectRecorded(b, { clientId: 'keeper', clean: false })
      assert.equal(first.connack.sessionPresent, false, 'no session existed yet')
      await first.client.subscribeAsync('keep/+', { qos: 1 })
      await leave(b, first)

      const again = await connectRecorded(b, { clientId: 'keeper', clean: false })
      assert.equal(again.connack.sessionPresent, true)
      await b.broker.publish({ topic: 'keep/x', payload: 'still subscribed', qos: 1 })
      await again.waitCount(1)
      assert.deepEqual(again.messages.map((m) => [m.topic, m.payload]), [['keep/x', 'still subscribed']])
      await again.client.endAsync()
    } finally {
      await b.close()
    }
  })

  for (const version of [3, 4] as const) {
    it(`queue QoS 1 and 2 messages while offline and deliver them in order on reconnect (protocol ${version})`, async () => {
      // [MQTT-3.1.2-5] QoS 1 and 2 messages matching the subscriptions are stored while disconnected;
      // [MQTT-4.6.0-6] topics are ordered. Checked on the wire (a raw client), since `mqtt` only
      // reports a QoS 2 message at PUBREL.
      const b = await startBroker()
      const id = `queued-${version}`
      try {
        const { peer } = await RawPeer.connect(b, id, false, version)
        await peer.subscribe('q/t', 2)
        peer.send({ type: 'disconnect' })
        await disconnected(b, id)

        const pub = await b.connect({ clientId: `queue-pub-${version}` })
        const sent: Array<[string, 1 | 2]> = []
        for (let i = 0; i < 10; i++) sent.push([`m${i}`, i % 3 === 0 ? 2 : 1])
        for (const [payload, qos] of sent) await pub.publishAsync('q/t', payload, { qos })

        const { peer: back, connack } = await RawPeer.connect(b, id, false, version)
        // [MQTT-3.2.2-2] session present on resume; MQTT 3.1's CONNACK flags byte is reserved (always 0)
        assert.equal(connack.sessionPresent, version === 4)
        const got: Array<[string, number]> = []
        for (let i = 0; i < sent.length; i++) {
          const p = await back.take('publish')
          assert.equal(p.topic, 'q/t')
          got.push([p.payload.toString(), p.qos])
        }
        assert.deepEqual(got, sent)
      } finally {
        await b.close()
      }
    })
  }

  it('do not queue QoS 0 messages published while offline', async () => {
    // [MQTT-3.1.2-5] only QoS 1 and 2 must be stored; QoS 0 storage is optional and Culex drops them.
    const b = await startBroker()
    try {
      const sub = await connectRecorded(b, { clientId: 'q0', clean: false })
      await sub.client.subscribeAsync('q0/t', { qos: 2 })
      await leave(b, sub)

      await b.broker.publish({ topic: 'q0/t', payload: 'qos0 while away', qos: 0 })
      await b.broker.publish({ topic: 'q0/t', payload: 'qos1 while away', qos: 1 })

      const back = await connectRecorded(b, { clientId: 'q0', clean: false })
      // A live message after the queue: anything queued would arrive before it.
      await b.broker.publish({ topic: 'q0/t', payload: 'live', qos: 1 })
      await back.waitCount(2)
      assert.deepEqual(
        back.messages.map((m) => m.payload),
        ['qos1 while away', 'live'],
      )
      await back.client.endAsync()
    } finally {
      await b.close()
    }
  })

  it('queue at most limits.maxQueued messages while offline; the rest are dropped', async () => {
    // Issue 2: the offline queue is bounded by `maxQueued` (memory never grows without bound).
    const b = await startBroker({ limits: { maxQueued: 5 } })
    try {
      const sub = await connectRecorded(b, { clientId: 'bounded', clean: false })
      await sub.client.subscribeAsync('bq/t', { qos: 1 })
      await leave(b, sub)

      for (let i = 0; i < 9; i++) await b.broker.publish({ topic: 'bq/t', payload: `m${i}`, qos: 1 })

      const back = await connectRecorded(b, { clientId: 'bounded', clean: false })
      await b.broker.publish({ topic: 'bq/t', payload: 'live', qos: 1 })
      await back.waitCount(6)
      assert.deepEqual(
        back.messages.map((m) => m.payload),
        ['m0', 'm1', 'm2', 'm3', 'm4', 'live'],
      )
      await back.client.endAsync()
    } finally {
      await b.close()
    }
  })

  it('resend unacknowledged QoS 1 messages on reconnect with DUP 1 and the same packet identifier', async () => {
    // [MQTT-4.4.0-1] on reconnect with clean session 0 the server re-sends unacknowledged PUBLISH
    // packets using their original packet identifiers; [MQTT-3.3.1-1] with DUP set to 1.
    const b = await startBroker()
    try {
      const { peer } = await RawPeer.connect(b, 'no-ack', false)
      await peer.subscribe('dup/t', 1)
      await b.broker.publish({ topic: 'dup/t', payload: 'unacked', qos: 1 })
      const original = await peer.take('publish')
      assert.equal(original.qos, 1)
      assert.equal(original.dup, false)
      await peer.drop(b, 'no-ack')

      const { peer: again, connack } = await RawPeer.connect(b, 'no-ack', false)
      assert.equal(connack.sessionPresent, true)
      const resent = await again.take('publish')
      assert.equal(resent.dup, true, 'DUP flag on the redelivery')
      assert.equal(resent.packetId, original.packetId, 'same packet identifier')
      assert.equal(resent.qos, 1)
      assert.equal(resent.topic, 'dup/t')
      assert.equal(resent.payload.toString(), 'unacked')
      // Acknowledged now: it is not sent a third time.
      again.send({ type: 'puback', packetId: resent.packetId })
      await delay(150)
      assert.deepEqual(again.pending(), [])
    } finally {
      await b.close()
    }
  })

  it('resend PUBREL on reconnect for a QoS 2 message whose PUBREC was sent', async () => {
    // [MQTT-4.4.0-1] unacknowledged PUBREL packets are re-sent with their original identifiers;
    // [MQTT-4.3.3-1] once PUBREC is received the PUBLISH is not sent again, only PUBREL.
    const b = await startBroker()
    try {
      const { peer } = await RawPeer.connect(b, 'half-q2', false)
      await peer.subscribe('q2/t', 2)
      await b.broker.publish({ topic: 'q2/t', payload: 'exactly once', qos: 2 })
      const publish = await peer.take('publish')
      const packetId = publish.packetId
      assert.equal(publish.qos, 2)
      peer.send({ type: 'pubrec', packetId })
      const pubrel = await peer.take('pubrel')
      assert.equal(pubrel.packetId, packetId)
      // No PUBCOMP: the broker must still hold the message in the PUBREL state.
      await peer.drop(b, 'half-q2')

      const { peer: again, connack } = await RawPeer.connect(b, 'half-q2', false)
      assert.equal(connack.sessionPresent, true)
      const resent = await again.take('pubrel')
      assert.equal(resent.packetId, packetId)
      again.send({ type: 'pubcomp', packetId })
      await delay(150)
      assert.deepEqual(again.pending(), [], 'no PUBLISH of the released message after PUBREL')
    } finally {
      await b.close()
    }
  })

  it('send at most limits.maxInflight unacknowledged QoS 1 messages; the next follows an acknowledgement', async () => {
    // Issue 2: `maxInflight` bounds a client's outgoing unacknowledged QoS 1/2 messages; the rest
    // wait in the session queue, in order [MQTT-4.6.0-6].
    const b = await startBroker({ limits: { maxInflight: 2 } })
    try {
      const { peer } = await RawPeer.connect(b, 'slow', true)
      await peer.subscribe('fc/t', 1)
      for (let i = 0; i < 4; i++) await b.broker.publish({ topic: 'fc/t', payload: `m${i}`, qos: 1 })
      const p0 = await peer.take('publish')
      const p1 = await peer.take('publish')
      assert.deepEqual([p0.payload.toString(), p1.payload.toString()], ['m0', 'm1'])
      await delay(150)
      assert.deepEqual(peer.pending(), [], 'a third message while two are unacknowledged')

      peer.send({ type: 'puback', packetId: p0.packetId })
      const p2 = await peer.take('publish')
      assert.equal(p2.payload.toString(), 'm2')
      await delay(150)
      assert.deepEqual(peer.pending(), [], 'one acknowledgement frees one slot')

      peer.send({ type: 'puback', packetId: p1.packetId })
      const p3 = await peer.take('publish')
      assert.equal(p3.payload.toString(), 'm3')
    } finally {
      await b.close()
    }
  })
})

describe('clean sessions (clean session 1)', () => {
  it('discard the previous session: session present 0, no queued messages, no subscriptions', async () => {
    // [MQTT-3.1.2-6] with clean session 1 the server discards any previous session and starts a
    // new one; [MQTT-3.2.2-1] session present is then 0.
    const b = await startBroker()
    try {
      const sub = await connectRecorded(b, { clientId: 'fresh', clean: false })
      await sub.client.subscribeAsync('cs/t', { qos: 1 })
      await leave(b, sub)
      await b.broker.publish({ topic: 'cs/t', payload: 'queued for the old session', qos: 1 })

      const clean = await connectRecorded(b, { clientId: 'fresh', clean: true })
      assert.equal(clean.connack.sessionPresent, false)
      await b.broker.publish({ topic: 'cs/t', payload: 'after the clean start', qos: 1 })
      await delay(150)
      assert.deepEqual(clean.messages, [], 'neither the queued message nor the old subscription survived')
      await leave(b, clean)

      // The clean session is not kept either [MQTT-3.1.2-6]: a later persistent connect finds nothing.
      const later = await connectRecorded(b, { clientId: 'fresh', clean: false })
      assert.equal(later.connack.sessionPresent, false)
      await delay(150)
      assert.deepEqual(later.messages, [])
      await later.client.endAsync()
    } finally {
      await b.close()
    }
  })
})

describe('takeover', () => {
  it('a second connection with the same client id closes the first, which is reported as taken-over', async () => {
    // [MQTT-3.1.4-2] if the client id is already connected, the server disconnects the existing client.
    const b = await startBroker()
    try {
      const connects: Client[] = []
      const disconnects: Array<[Client, DisconnectReason]> = []
      b.broker.on('clientConnect', (c) => connects.push(c))
      b.broker.on('clientDisconnect', (c, reason) => disconnects.push([c, reason]))

      const first = await b.connect({ clientId: 'twin' })
      const firstClosed = once(first, 'close')
      const reported = disconnected(b, 'twin')
      const second = await b.connect({ clientId: 'twin' })
      await firstClosed
      const [gone, reason] = await reported

      assert.equal(connects.length, 2)
      assert.equal(gone, connects[0], 'the first connection is the one that went away')
      assert.equal(reason, 'taken-over')
      assert.equal(gone.connected, false)
      assert.equal(connects[1]?.connected, true)
      assert.deepEqual(disconnects, [[connects[0], 'taken-over']])

      // The second connection is fully served.
      await second.subscribeAsync('twin/t', { qos: 1 })
      const got = once<[string, Buffer]>(second, 'message')
      await b.broker.publish({ topic: 'twin/t', payload: 'to the survivor', qos: 1 })
      const [topic, payload] = await got
      assert.equal(topic, 'twin/t')
      assert.equal(payload.toString(), 'to the survivor')
    } finally {
      await b.close()
    }
  })
})
