/**
 * What a persistent session carries across `broker.close()` and a second broker started on the
 * same MemoryPersistence: the subscription identifiers and shared-subscription origin of its
 * deliveries, its expiry (counted from when it lost its connection, not from the restart), its
 * delayed will (published once, when due, by the broker running then), and the limits that bound
 * it (`persistentSessionExpiry`, `maxQueuedBytes`). A closed broker must leave the session alone:
 * its expiry and will-delay timers stop with it.
 *
 * Time is node:test mock time (`mockClock`), moved with `tick`; the broker's timers due fire inside
 * the tick. "Nothing arrived" is proven with a PINGREQ fence on the raw client, never a sleep.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { MemoryPersistence, type Client, type Message } from '../../src/index.js'
import type { Properties, PublishPacket, WillMessage } from '../../src/protocol/packets.js'
import { disconnected, mockClock, startBroker, storedRetained, storedState, type RawMqtt, type TestBroker } from '../helpers/index.js'

/** CONNECT fields of an MQTT 5 client with Session Expiry Interval `expiry` (clean start unless `resume`). */
function v5Session(clientId: string, expiry: number, resume = false, will?: WillMessage): { clientId: string; cleanSession: boolean; properties: Properties; will?: WillMessage } {
  const fields: { clientId: string; cleanSession: boolean; properties: Properties; will?: WillMessage } = {
    clientId,
    cleanSession: !resume,
    properties: { sessionExpiryInterval: expiry },
  }
  if (will !== undefined) fields.will = will
  return fields
}

/** An MQTT 5 will on `wills/{clientId}` with Will Delay Interval `delay` seconds. */
function delayedWill(clientId: string, delay: number, retain = false): WillMessage {
  return { topic: `wills/${clientId}`, payload: Buffer.from(`will of ${clientId}`), qos: 1, retain, properties: { willDelayInterval: delay } }
}

/** MQTT 5 DISCONNECT 0 (normal: the will is discarded), and the broker has seen the client go. */
async function leaveV5(b: TestBroker, raw: RawMqtt, clientId: string): Promise<void> {
  const left = disconnected(b, clientId)
  raw.send({ type: 'disconnect', reasonCode: 0 })
  await left
}

/** 3.1.1 DISCONNECT, and the broker has seen the client go. */
async function leaveV4(b: TestBroker, raw: RawMqtt, clientId: string): Promise<void> {
  const left = disconnected(b, clientId)
  raw.send({ type: 'disconnect' })
  await left
}

/** A 3.1.1 raw watcher subscribed to `filter` at QoS 1, on a clean session. */
async function watcher(b: TestBroker, clientId: string, filter: string): Promise<RawMqtt> {
  const { raw } = await b.rawConnect({ clientId }, 4)
  await raw.subscribe(filter, 1)
  return raw
}

const payloads = (publishes: PublishPacket[]): string[] => publishes.map((p) => p.payload.toString())

describe('restart: what deliveries carry', () => {
  test('subscription identifiers survive a restart on in-flight and queued messages, and on the restored subscription [MQTT-3.3.4-3]', async () => {
    const persistence = new MemoryPersistence()
    let firstPacketId: number

    const first = await startBroker({ persistence }, 5)
    try {
      const { raw: sub } = await first.rawConnect(v5Session('sid', 60))
      const suback = await sub.subscribe([{ topicFilter: 'sid/t', qos: 1 }], { subscriptionIdentifier: [7] })
      assert.deepEqual(suback.reasonCodes, [1])
      await first.broker.publish({ topic: 'sid/t', payload: 'in flight', qos: 1 })
      const original = await sub.takePublish('in flight')
      // The identifier was there before the restart: what follows tests that it survives.
      assert.deepEqual(original.properties?.subscriptionIdentifier, [7])
      firstPacketId = original.packetId
      // Left unacknowledged: the message stays in flight.
      await sub.drop(first, 'sid')
      await first.broker.publish({ topic: 'sid/t', payload: 'queued', qos: 1 })
    } finally {
      await first.close()
    }
    // One delivery of each kind is stored (this is what the restart must carry the identifiers of).
    const stored = (await storedState(persistence)).sessions.find((s) => s.clientId === 'sid')
    assert.deepEqual(
      stored?.deliveries.map((d) => [d.message.payload.toString(), d.state]),
      [
        ['in flight', 'sent'],
        ['queued', 'queued'],
      ],
    )

    const second = await startBroker({ persistence }, 5)
    try {
      const { raw: back, connack } = await second.rawConnect(v5Session('sid', 60, true))
      assert.equal(connack.sessionPresent, true)
      const resent = await back.takePublish('in flight')
      const queued = await back.takePublish('queued')
      assert.equal(resent.dup, true, 'the in-flight message is re-sent with DUP')
      assert.equal(resent.packetId, firstPacketId, 'with its packet identifier')
      assert.equal(queued.dup, false)
      assert.deepEqual(resent.properties?.subscriptionIdentifier, [7], 'the re-sent in-flight message carries the subscription identifier')
      assert.deepEqual(queued.properties?.subscriptionIdentifier, [7], 'the queued message carries the subscription identifier')
      // The restored subscription keeps its identifier for what is routed after the restart.
      await second.broker.publish({ topic: 'sid/t', payload: 'live', qos: 1 })
      const live = await back.takePublish('live')
      assert.deepEqual(live.properties?.subscriptionIdentifier, [7], 'a message routed after the restart carries it')
      assert.deepEqual(payloads(back.publishes()), ['in flight', 'queued', 'live'])
    } finally {
      await second.close()
    }
  })

  test('a queued message from a shared subscription goes to another member when its session ends after a restart', async () => {
    // MQTT 5 section 4.8.2: if the session of the member chosen for a QoS 1 message terminates
    // before its client reconnects, the server SHOULD send the message to another member of the
    // shared subscription. The restored delivery must still know the group it came through.
    const persistence = new MemoryPersistence()

    const first = await startBroker({ persistence })
    try {
      for (const clientId of ['member-a', 'member-b']) {
        const { raw } = await first.rawConnect({ clientId, cleanSession: false })
        await raw.subscribe('$share/g/t', 1)
        await raw.drop(first, clientId)
      }
      // Both offline: the group gives the message to one of them (member-a, first to join).
      const { matched } = await first.broker.publish({ topic: 't', payload: 'for the group', qos: 1 })
      assert.equal(matched, 1)
    } finally {
      await first.close()
    }
    const before = (await storedState(persistence)).sessions
    const queuedAt = (id: string): string[] | undefined => before.find((s) => s.clientId === id)?.deliveries.map((d) => d.message.payload.toString())
    assert.deepEqual(queuedAt('member-a'), ['for the group'], 'member-a holds the message when the broker restarts')
    assert.deepEqual(queuedAt('member-b'), [], 'member-b does not')

    const second = await startBroker({ persistence })
    try {
      const { raw: b, connack } = await second.rawConnect({ clientId: 'member-b', cleanSession: false })
      assert.equal(connack.sessionPresent, true)
      await b.ping()
      assert.deepEqual(b.publishes(), [], 'member-b has nothing before member-a’s session ends')

      // member-a comes back with a clean session: its old session, and the message it held, end there.
      const { raw: a, connack: aConnack } = await second.rawConnect({ clientId: 'member-a', cleanSession: true })
      assert.equal(aConnack.sessionPresent, false)
      const handedOn = await b.takePublish('for the group')
      assert.equal(handedOn.topic, 't')
      assert.equal(handedOn.qos, 1)
      b.send({ type: 'puback', packetId: handedOn.packetId })
      await b.ping()
      await a.ping()
      assert.deepEqual(payloads(b.publishes()), ['for the group'], 'member-b gets it once')
      assert.deepEqual(a.publishes(), [], 'member-a’s new session does not get it')
    } finally {
      await second.close()
    }
    const after = (await storedState(persistence)).sessions
    assert.deepEqual(after.find((s) => s.clientId === 'member-b')?.deliveries, [], 'acknowledged by member-b')
    assert.equal(after.find((s) => s.clientId === 'member-a'), undefined, 'member-a’s persistent session is gone')
  })
})

describe('restart: session expiry and timers', () => {
  test('session expiry counts from the disconnect, across a restart [review 1.12]', async (t) => {
    const clock = mockClock(t)
    const persistence = new MemoryPersistence()

    const first = await startBroker({ persistence }, 5)
    let t0: number
    try {
      for (const clientId of ['early', 'late']) {
        const { raw } = await first.rawConnect(v5Session(clientId, 10))
        await raw.subscribe([{ topicFilter: `${clientId}/t`, qos: 1 }])
        await leaveV5(first, raw, clientId)
      }
      t0 = clock.now()
      clock.tick(6_000)
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence }, 5)
    try {
      // t0 + 8 s: within the 10 s, the session is there (the control).
      clock.tick(2_000)
      assert.equal(clock.now() - t0, 8_000)
      const early = await second.rawConnect(v5Session('early', 10, true))
      assert.equal(early.connack.sessionPresent, true, 'at t0 + 8 s the session is present')

      // t0 + 11 s: 10 s after the disconnect (though only 5 s after the restart), it has expired.
      clock.tick(3_000)
      assert.equal(clock.now() - t0, 11_000)
      const late = await second.rawConnect(v5Session('late', 10, true))
      assert.equal(late.connack.sessionPresent, false, 'at t0 + 11 s the session has expired')
    } finally {
      await second.close()
    }
  })

  test('close() stops the session-expiry timers: a closed broker does not delete a session another broker resumed [review 1.9]', async (t) => {
    const clock = mockClock(t)
    const persistence = new MemoryPersistence()

    const first = await startBroker({ persistence }, 5)
    try {
      const { raw } = await first.rawConnect(v5Session('short', 1))
      await raw.subscribe([{ topicFilter: 'short/t', qos: 1 }])
      // Offline with 1 s to live: broker 1 arms its expiry timer.
      await leaveV5(first, raw, 'short')
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence }, 5)
    try {
      clock.tick(500)
      const { raw: back, connack } = await second.rawConnect(v5Session('short', 1, true))
      assert.equal(connack.sessionPresent, true)
      // Past broker 1's due time: its timer, were it still armed, would delete the stored session.
      clock.tick(1_500)
      await back.ping()
      const stored = (await storedState(persistence)).sessions.find((s) => s.clientId === 'short')
      assert.ok(stored !== undefined, 'the stored session is still there')
      assert.deepEqual(
        stored.subscriptions.map((s) => s.topicFilter),
        ['short/t'],
      )
      // And the live one works.
      await second.broker.publish({ topic: 'short/t', payload: 'still subscribed', qos: 1 })
      await back.takePublish('still subscribed')

      // The control: the clock does drive expiry here. Offline on broker 2, the session ends 1 s later.
      await leaveV5(second, back, 'short')
      clock.tick(999)
      assert.ok((await storedState(persistence)).sessions.some((s) => s.clientId === 'short'), 'not before 1 s')
      clock.tick(1)
      assert.equal((await storedState(persistence)).sessions.find((s) => s.clientId === 'short'), undefined, 'expired on broker 2 after 1 s')
    } finally {
      await second.close()
    }
  })

  test('close() stops the will-delay timers: a closed broker does not publish a will the client cancelled on the next broker [review 1.9]', async (t) => {
    const clock = mockClock(t)
    const persistence = new MemoryPersistence()
    const will = delayedWill('w-cancel', 2, true)
    const firstWills: Array<[Message, Client]> = []

    const first = await startBroker({ persistence }, 5)
    try {
      first.broker.on('willPublish', (message, client) => firstWills.push([message, client]))
      const { raw } = await first.rawConnect(v5Session('w-cancel', 60, false, will))
      // Lost without DISCONNECT: broker 1 arms a 2 s will-delay timer.
      await raw.drop(first, 'w-cancel')
    } finally {
      await first.close()
    }
    const pending = (await storedState(persistence)).sessions.find((s) => s.clientId === 'w-cancel')?.will
    assert.ok(pending?.publishAt !== undefined, 'the delayed will is stored with its due time')

    const second = await startBroker({ persistence }, 5)
    try {
      const watch = await watcher(second, 'watcher', 'wills/#')
      clock.tick(500)
      // Back in time on broker 2, with the same will: the pending one is cancelled [MQTT-3.1.3-9].
      const { raw: back, connack } = await second.rawConnect(v5Session('w-cancel', 60, true, will))
      assert.equal(connack.sessionPresent, true)
      // Past broker 1's due time.
      clock.tick(2_000)
      await back.ping()
      await watch.ping()
      assert.deepEqual(firstWills, [], 'broker 1 published no will after close()')
      assert.deepEqual(await storedRetained(persistence, 'wills/'), [], 'no retained will reached the store')
      assert.deepEqual(watch.publishes(), [], 'no will on broker 2')
      assert.ok((await storedState(persistence)).sessions.find((s) => s.clientId === 'w-cancel')?.will !== undefined, 'the connected client’s will is still stored')

      // The control: the same will, lost on broker 2, is published there after its delay (and
      // retained in the store), so the clock and the observations above do see a will fire.
      await back.drop(second, 'w-cancel')
      clock.tick(2_000)
      const got = await watch.takePublish('will of w-cancel')
      assert.equal(got.topic, 'wills/w-cancel')
      assert.equal((await storedRetained(persistence, 'wills/')).length, 1)
      assert.deepEqual(firstWills, [], 'and still none from broker 1')
    } finally {
      await second.close()
    }
  })

  test('a delayed will survives close(): the next broker publishes it once, when due', async (t) => {
    const clock = mockClock(t)
    const persistence = new MemoryPersistence()
    let t0: number

    const first = await startBroker({ persistence }, 5)
    try {
      const { raw } = await first.rawConnect(v5Session('w-late', 60, false, delayedWill('w-late', 5)))
      await raw.drop(first, 'w-late')
      t0 = clock.now()
      clock.tick(1_000)
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence }, 5)
    try {
      const watch = await watcher(second, 'watcher', 'wills/#')
      clock.tick(3_000)
      assert.equal(clock.now() - t0, 4_000)
      await watch.ping()
      assert.deepEqual(watch.publishes(), [], 'not at t0 + 4 s')
      clock.tick(999)
      await watch.ping()
      assert.deepEqual(watch.publishes(), [], 'not at t0 + 4.999 s')
      clock.tick(1)
      const got = await watch.takePublish('will of w-late')
      assert.equal(got.topic, 'wills/w-late')
      assert.equal(got.qos, 1)
      watch.send({ type: 'puback', packetId: got.packetId })

      // Exactly once: nothing more later on, and the store no longer holds it for another broker.
      clock.tick(10_000)
      await watch.ping()
      assert.deepEqual(payloads(watch.publishes()), ['will of w-late'])
      const stored = (await storedState(persistence)).sessions.find((s) => s.clientId === 'w-late')
      assert.ok(stored !== undefined, 'the session itself lives on (60 s)')
      assert.equal(stored.will, undefined, 'the published will is no longer stored')
    } finally {
      await second.close()
    }
  })
})

describe('limits on persistent sessions', () => {
  test('limits.persistentSessionExpiry expires 3.1.1 persistent sessions', async (t) => {
    const clock = mockClock(t)
    const b = await startBroker({ limits: { persistentSessionExpiry: 10 } })
    try {
      for (const clientId of ['at-9', 'at-11']) {
        const { raw } = await b.rawConnect({ clientId, cleanSession: false })
        await raw.subscribe(`${clientId}/t`, 1)
        await leaveV4(b, raw, clientId)
      }
      clock.tick(9_000)
      assert.equal((await b.rawConnect({ clientId: 'at-9', cleanSession: false })).connack.sessionPresent, true, 'present after 9 s')
      clock.tick(2_000)
      assert.equal((await b.rawConnect({ clientId: 'at-11', cleanSession: false })).connack.sessionPresent, false, 'expired after 11 s')
    } finally {
      await b.close()
    }
  })

  test('without limits.persistentSessionExpiry a 3.1.1 persistent session does not expire', async (t) => {
    const clock = mockClock(t)
    const b = await startBroker()
    try {
      assert.equal(b.broker.limits.persistentSessionExpiry, 0xffffffff)
      const { raw } = await b.rawConnect({ clientId: 'forever', cleanSession: false })
      await raw.subscribe('forever/t', 1)
      await leaveV4(b, raw, 'forever')
      clock.tick(10 * 24 * 3600 * 1000)
      const { raw: back, connack } = await b.rawConnect({ clientId: 'forever', cleanSession: false })
      assert.equal(connack.sessionPresent, true, 'present after 10 days')
      await b.broker.publish({ topic: 'forever/t', payload: 'still subscribed', qos: 1 })
      await back.takePublish('still subscribed')
    } finally {
      await b.close()
    }
  })

  /** `n` QoS 1 messages with `size`-byte payloads 'm0…', 'm1…' (padded with '.'). */
  const padded = (n: number, size: number): string[] => Array.from({ length: n }, (_, i) => `m${i}`.padEnd(size, '.'))

  test('limits.maxQueuedBytes bounds what an offline session queues, payload and topic counted', async () => {
    const b = await startBroker({ limits: { maxQueuedBytes: 100, maxQueued: 1000 } })
    try {
      for (const clientId of ['short-topic', 'long-topic']) {
        const { raw } = await b.rawConnect({ clientId, cleanSession: false })
        await raw.subscribe(clientId === 'short-topic' ? 'q' : 'topic/long', 1)
        await raw.drop(b, clientId)
      }
      // 30 + 1 = 31 bytes each: 3 fit (93 <= 100), a 4th would make 124.
      const short = padded(10, 30)
      for (const payload of short) await b.broker.publish({ topic: 'q', payload, qos: 1 })
      // 15 + 10 = 25 bytes each: 4 fit (exactly 100); counting payloads alone, 6 would (90).
      const long = padded(10, 15)
      for (const payload of long) await b.broker.publish({ topic: 'topic/long', payload, qos: 1 })

      const { raw: s, connack } = await b.rawConnect({ clientId: 'short-topic', cleanSession: false })
      assert.equal(connack.sessionPresent, true)
      await s.ping()
      assert.deepEqual(payloads(s.publishes()), short.slice(0, 3), 'the first three, in order')

      const { raw: l } = await b.rawConnect({ clientId: 'long-topic', cleanSession: false })
      await l.ping()
      assert.deepEqual(payloads(l.publishes()), long.slice(0, 4), 'the topic counts: the first four')
    } finally {
      await b.close()
    }
  })

  test('limits.maxQueuedBytes counts the queue a restart restored', async () => {
    const persistence = new MemoryPersistence()
    const limits = { maxQueuedBytes: 100, maxQueued: 1000 }
    const messages = padded(4, 30)

    const first = await startBroker({ persistence, limits })
    try {
      const { raw } = await first.rawConnect({ clientId: 'bounded', cleanSession: false })
      await raw.subscribe('q', 1)
      await raw.drop(first, 'bounded')
      for (const payload of messages.slice(0, 2)) await first.broker.publish({ topic: 'q', payload, qos: 1 })
    } finally {
      await first.close()
    }

    const second = await startBroker({ persistence, limits })
    try {
      // 62 bytes restored: one more fits (93), the next does not (124).
      for (const payload of messages.slice(2)) await second.broker.publish({ topic: 'q', payload, qos: 1 })
      const { raw: back, connack } = await second.rawConnect({ clientId: 'bounded', cleanSession: false })
      assert.equal(connack.sessionPresent, true)
      await back.ping()
      assert.deepEqual(payloads(back.publishes()), messages.slice(0, 3))
    } finally {
      await second.close()
    }
  })
})
