/**
 * Regression tests for defects a review found in the durable-persistence code: a CONNACK that
 * vouched for a deletion not yet committed, sessions and wills left behind by a connection that
 * never got its CONNACK, the undo of a failed SUBSCRIBE, timers and commits outliving close(), a
 * retry that skipped its pause, and messages to an online subscriber counted against maxQueued
 * while they waited for their commit.
 *
 * The store is the memory adapter behind GatedStore, declared durable, whose commits the test
 * holds and releases. Time is node:test mock time (`mockClock`) where a broker timer is the
 * subject; "nothing happened" is proven at a fence (PINGREQ, an event, the broker's end of a
 * socket closing, a turn of the event loop), never after a sleep.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { describe, test } from 'node:test'
import { Broker, type BrokerOptions, type PersistenceAdapter, type PersistenceOp } from '../../src/index.js'
import type { ConnectPacket, Properties, WillMessage } from '../../src/protocol/packets.js'
import {
  deferred,
  GatedStore,
  mockClock,
  nextTurn,
  once,
  RawMqtt,
  startBroker,
  storedRetained,
  storedState,
  until,
  Waiters,
  wrapAdapter,
  type TestBroker,
} from '../helpers/index.js'

/** CONNECT at protocol level `version` with these fields (persistent or not, will ...), keep alive 0. */
function connectFor(version: 4 | 5, fields: Partial<Omit<ConnectPacket, 'type' | 'protocolName' | 'protocolVersion'>> & { clientId: string }): ConnectPacket {
  return { type: 'connect', protocolName: 'MQTT', protocolVersion: version, cleanSession: true, keepAlive: 0, ...fields }
}

const kinds = (batch: readonly PersistenceOp[]): string[] => batch.map((o) => `${o.op} ${'clientId' in o ? o.clientId : ''}`.trim())

/**
 * GatedStore holds a commit and lets it through; it cannot fail one it holds. This adapter over
 * its adapter holds the next commit after `holdNext()` and, at `fail()`, rejects it without its
 * operations reaching the store. Other commits go to the GatedStore as they are.
 */
class FailingGate {
  readonly adapter: PersistenceAdapter
  private armed = false
  private held: ((error: Error) => void) | undefined
  private readonly arrived = deferred<readonly PersistenceOp[]>()

  constructor(store: GatedStore) {
    this.adapter = wrapAdapter(store.adapter, {
      commit: (ops) => {
        if (!this.armed) return store.adapter.commit(ops)
        this.armed = false
        return new Promise<void>((_resolve, reject) => {
          this.held = reject
          this.arrived.resolve(ops)
        })
      },
    })
  }

  holdNext(): void {
    this.armed = true
  }

  /** Resolves with the operations of the held commit once it is waiting. */
  waiting(): Promise<readonly PersistenceOp[]> {
    return this.arrived.promise
  }

  fail(): void {
    this.held?.(new Error('disk on fire'))
  }
}

/** An adapter over `inner` that records every commit the broker makes after it closed the adapter. */
function watchClose(inner: PersistenceAdapter): { adapter: PersistenceAdapter; afterClose: PersistenceOp[][]; closed: () => boolean } {
  let closed = false
  const afterClose: PersistenceOp[][] = []
  const adapter = wrapAdapter(inner, {
    commit: (ops) => {
      if (closed) afterClose.push([...ops])
      return inner.commit(ops)
    },
    close: () => {
      closed = true
      return inner.close()
    },
  })
  return { adapter, afterClose, closed: () => closed }
}

/**
 * A broker without a listener of its own: the test's TCP server hands it each socket, and keeps the
 * broker's end, so a test can wait until the broker has seen a connection close before its CONNACK
 * (which no event reports). With no listener to stop, `close()` ends the connections, stops the
 * timers and starts settling the store without leaving the microtask queue.
 */
interface FedBroker {
  broker: Broker
  /** A real TCP connection handed to the broker (no CONNECT sent yet), with the broker's end of it. */
  connection(version: 4 | 5): Promise<{ raw: RawMqtt; brokerSide: net.Socket }>
  close(): Promise<void>
}

async function startFedBroker(options: BrokerOptions): Promise<FedBroker> {
  const broker = new Broker(options)
  const accepted: net.Socket[] = []
  const arrivals = new Waiters()
  const raws: RawMqtt[] = []
  const server = net.createServer((socket) => {
    broker.handle(socket, { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, transport: 'tcp' })
    accepted.push(socket)
    arrivals.notify()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  return {
    broker,
    connection: async (version) => {
      const seen = accepted.length
      const raw = await RawMqtt.tcp(port, version)
      raws.push(raw)
      await arrivals.until(() => accepted.length > seen, undefined, 'the server to accept the connection')
      return { raw, brokerSide: accepted[seen] as net.Socket }
    },
    close: async () => {
      for (const r of raws) r.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await broker.close()
    },
  }
}

describe('review fixes: CONNACK', () => {
  test('a clean-start CONNACK waits until an earlier clean start’s deletion of the stored session is committed', async () => {
    const store = new GatedStore()
    const bDecided = deferred<void>()
    const b = await startBroker({
      persistence: store.adapter,
      authenticate: (request) => {
        if (request.username === 'b') bDecided.resolve()
        return true
      },
    })
    try {
      const { raw: old } = await b.rawConnect({ clientId: 'x', cleanSession: false })
      await old.subscribe('t/#', 1)
      await old.drop(b, 'x')
      const before = (await storedState(store.memory)).sessions.find((s) => s.clientId === 'x')
      assert.deepEqual(before?.subscriptions.map((s) => s.topicFilter), ['t/#'], 'the old persistent session is stored')
      // What the store holds at the moment B is accepted (its CONNACK goes out just before).
      const acceptedB: string[][] = []
      b.broker.on('clientConnect', (client) => {
        if (client.username === 'b') acceptedB.push(store.memory.open().sessions.map((s) => s.clientId))
      })

      store.hold()
      const a = await b.raw()
      a.send(connectFor(4, { clientId: 'x', username: 'a' }))
      assert.deepEqual(kinds(await store.waiting()), ['sessionDelete x'], 'A’s clean start deletes the stored session')

      const second = await b.raw()
      second.send(connectFor(4, { clientId: 'x', username: 'b' }))
      // The broker accepts (or not) in the same turn as authenticate answers: decided by now.
      await bDecided.promise
      assert.deepEqual(acceptedB, [], 'B was accepted (CONNACK sent) while the deletion of the old session was still uncommitted')

      store.release()
      const connack = await second.take('connack')
      assert.equal(connack.returnCode, 0)
      assert.equal(connack.sessionPresent, false)
      assert.deepEqual(acceptedB, [[]], 'when B is accepted, the old session is gone from the store')
    } finally {
      store.release()
      await b.close()
    }
  })
})

/**
 * A (3.1.1, persistent, with a retained will) connects while the store is held: its CONNACK waits.
 * C connects with the same client identifier, and its authenticate is still deciding when the
 * commit completes, so A is closed without CONNACK (C is the newest CONNECT); then C is refused.
 * Nobody holds the session A opened.
 */
async function connectRaceLostToARefusal(t: { store: GatedStore; b: TestBroker; decideC: (ok: boolean) => void; cAsked: Promise<void> }): Promise<void> {
  const { store, b } = t
  const will: WillMessage = { topic: 'will/x', payload: Buffer.from('A died'), qos: 1, retain: true }
  store.hold()
  const a = await b.raw(4)
  a.send(connectFor(4, { clientId: 'x', cleanSession: false, will }))
  await store.waiting()
  const c = await b.raw(4)
  c.send(connectFor(4, { clientId: 'x', username: 'slow' }))
  await t.cAsked
  store.release()
  await a.waitClosed()
  assert.equal(a.all.some((p) => p.type === 'connack'), false, 'A never got a CONNACK')
  t.decideC(false)
  assert.equal((await c.next('connack')).returnCode, 4, 'C is refused')
  await c.waitClosed()
}

function raceBroker(extra: BrokerOptions = {}): Promise<{ store: GatedStore; b: TestBroker; decideC: (ok: boolean) => void; cAsked: Promise<void> }> {
  const store = new GatedStore()
  const verdict = deferred<boolean>()
  const asked = deferred<void>()
  return startBroker({
    ...extra,
    persistence: store.adapter,
    authenticate: (request) => {
      if (request.username !== 'slow') return true
      asked.resolve()
      return verdict.promise
    },
  }).then((b) => ({ store, b, decideC: verdict.resolve, cAsked: asked.promise }))
}

describe('review fixes: a connection that never got its CONNACK', () => {
  test('the session opened by a CONNECT that lost the race to a refused one goes offline and expires after its interval', async (t) => {
    const clock = mockClock(t)
    const race = await raceBroker({ limits: { persistentSessionExpiry: 1 } })
    const { store, b } = race
    try {
      await connectRaceLostToARefusal(race)
      assert.equal(b.broker.getSession('x')?.connected, false)
      const stored = (await storedState(store.memory)).sessions.find((s) => s.clientId === 'x')
      assert.equal(stored?.disconnectedAt, clock.now(), 'the stored session is offline since A went')
      clock.tick(999)
      assert.equal(b.broker.getSession('x')?.connected, false, 'not before 1 s')
      clock.tick(1)
      assert.equal(b.broker.getSession('x'), undefined, 'the session expired 1 s after A went')
      assert.equal((await storedState(store.memory)).sessions.find((s) => s.clientId === 'x'), undefined)
    } finally {
      store.release()
      await b.close()
    }
  })

  test('the will of a CONNECT that lost the race to a refused one is not kept: a restarted broker does not publish it', async () => {
    const race = await raceBroker()
    const { store, b } = race
    try {
      await connectRaceLostToARefusal(race)
      const stored = (await storedState(store.memory)).sessions.find((s) => s.clientId === 'x')
      assert.ok(stored !== undefined, 'the persistent session stays')
      assert.equal(stored.will, undefined, 'A’s will is not stored')
    } finally {
      store.release()
      await b.close()
    }
    const restarted = await startBroker({ persistence: store.adapter })
    try {
      assert.deepEqual(await storedRetained(store.memory, 'will/'), [], 'the restarted broker published A’s (retained) will')
    } finally {
      await restarted.close()
    }
  })

  test('a reconnect that closes before its CONNACK leaves the previous connection’s delayed will due as before', async (t) => {
    const clock = mockClock(t)
    const store = new GatedStore()
    const fed = await startFedBroker({ persistence: store.adapter })
    const wills: string[] = []
    fed.broker.on('willPublish', (message) => wills.push(message.topic))
    const session: { clientId: string; cleanSession: boolean; properties: Properties } = { clientId: 'x', cleanSession: false, properties: { sessionExpiryInterval: 60 } }
    try {
      const first = await fed.connection(5)
      const will: WillMessage = { topic: 'will/x', payload: Buffer.from('gone'), qos: 0, retain: false, properties: { willDelayInterval: 1 } }
      assert.equal((await first.raw.connect({ ...session, will })).returnCode, 0)
      // Gone without DISCONNECT: the will is due in 1 s.
      await first.raw.drop(fed, 'x')

      store.hold()
      const second = await fed.connection(5)
      second.raw.send(connectFor(5, session))
      await store.waiting()
      // The reconnect goes before its CONNACK, and the broker has seen it go.
      const gone = once(second.brokerSide, 'close')
      second.raw.destroy()
      await gone
      store.release()
      await nextTurn()

      clock.tick(999)
      assert.deepEqual(wills, [], 'not before its delay')
      clock.tick(1)
      assert.deepEqual(wills, ['will/x'], 'the will is published when it was due')
    } finally {
      store.release()
      await fed.close()
    }
  })
})

describe('review fixes: SUBSCRIBE', () => {
  test('undoing a SUBSCRIBE whose commit failed leaves alone the subscription a later SUBSCRIBE to the same filter made', async () => {
    const store = new GatedStore()
    const gate = new FailingGate(store)
    const b = await startBroker({ persistence: gate.adapter }, 5)
    b.broker.on('persistenceError', () => {})
    try {
      const { raw: sub } = await b.rawConnect({ clientId: 's', cleanSession: true, properties: { sessionExpiryInterval: 3600 } })
      gate.holdNext()
      sub.send({ type: 'subscribe', packetId: 1, subscriptions: [{ topicFilter: 'a/b', qos: 1 }] })
      assert.deepEqual(kinds(await gate.waiting()), ['subscribe s'])
      sub.send({ type: 'subscribe', packetId: 2, subscriptions: [{ topicFilter: 'a/b', qos: 2 }] })
      // The fence: the second SUBSCRIBE is handled (recorded behind the held commit).
      await sub.ping()
      assert.deepEqual(sub.pending(), [])

      gate.fail()
      assert.deepEqual((await sub.take('suback', (p) => p.packetId === 1)).reasonCodes, [0x80])
      assert.deepEqual((await sub.take('suback', (p) => p.packetId === 2)).reasonCodes, [2])

      assert.equal(b.broker.getSession('s')?.subscriptions, 1, 'the subscription acknowledged with success is there')
      const stored = (await storedState(store.memory)).sessions.find((s) => s.clientId === 's')
      assert.deepEqual(
        stored?.subscriptions.map((s) => [s.topicFilter, s.qos]),
        [['a/b', 2]],
        'and stored',
      )
      const { raw: pub } = await b.rawConnect({ clientId: 'p' })
      pub.publish('a/b', 'hello', 1, { packetId: 1 })
      assert.equal((await sub.takePublish('hello')).qos, 1, 'and routed, at the QoS the later SUBSCRIBE granted')
    } finally {
      await b.close()
    }
  })
})

describe('review fixes: nothing after close()', () => {
  test('a commit that fails at close() is not tried again on the closed adapter', async (t) => {
    const clock = mockClock(t)
    const store = new GatedStore()
    const watched = watchClose(store.adapter)
    const b = await startBroker({ persistence: watched.adapter })
    b.broker.on('persistenceError', () => {})
    let closing: Promise<void> | undefined
    try {
      const { raw: keeper } = await b.rawConnect({ clientId: 'keeper', cleanSession: false })
      await keeper.subscribe('t/#', 1)
      store.fail('reject')
      // close() ends the connection: the session goes offline, and that change cannot be committed.
      closing = b.broker.close()
      await assert.rejects(closing, /refused/)
      assert.equal(watched.closed(), true)
      store.heal()
      clock.tick(60_000)
      await nextTurn()
      assert.deepEqual(watched.afterClose.map(kinds), [], 'committed to the adapter after close()')
    } finally {
      store.heal()
      await b.close().catch(() => {})
    }
  })

  test('close() while a CONNACK waits for the store arms no expiry timer: nothing is committed after close()', async (t) => {
    const clock = mockClock(t)
    const store = new GatedStore()
    const watched = watchClose(store.adapter)
    const fed = await startFedBroker({ persistence: watched.adapter })
    try {
      const { raw } = await fed.connection(5)
      store.hold()
      raw.send(connectFor(5, { clientId: 'x', cleanSession: false, properties: { sessionExpiryInterval: 1 } }))
      await store.waiting()
      const closing = fed.broker.close()
      // With no listener to stop, close() has ended the connection, stopped the timers and is
      // waiting for the store by the next turn.
      await nextTurn()
      store.release()
      await closing
      assert.equal(watched.closed(), true)
      // Past the session's expiry: a timer armed by the closed broker would end it now.
      clock.tick(1000)
      await nextTurn()
      assert.equal(fed.broker.getSession('x')?.persistent, true, 'the closed broker expired the session')
      assert.deepEqual(watched.afterClose.map(kinds), [], 'committed to the adapter after close()')
      const stored = (await storedState(store.memory)).sessions.find((s) => s.clientId === 'x')
      assert.ok(stored !== undefined, 'the session is left in the store for the next broker to expire')
    } finally {
      store.release()
      await fed.close()
    }
  })
})

describe('review fixes: retries', () => {
  test('a failed commit is tried again only after its pause, even when the failure makes the broker record something', async (t) => {
    const clock = mockClock(t)
    const store = new GatedStore()
    const attempts: PersistenceOp[][] = []
    const b = await startBroker({
      persistence: wrapAdapter(store.adapter, {
        commit: (ops) => {
          attempts.push([...ops])
          return store.adapter.commit(ops)
        },
      }),
    })
    b.broker.on('persistenceError', () => {})
    try {
      const { raw: keeper } = await b.rawConnect({ clientId: 'keeper', cleanSession: false })
      await keeper.subscribe('t', 1)
      await keeper.drop(b, 'keeper')
      // A persistent 3.1.1 publisher: the failure disconnects it, and its session going offline is recorded.
      const { raw: pub } = await b.rawConnect({ clientId: 'pub', cleanSession: false })
      const first = attempts.length
      store.fail('reject')
      pub.publish('t', 'kept', 1, { packetId: 1 })
      await pub.waitClosed()
      // A commit started on the turn after the failure would have started by now.
      await nextTurn()
      const tried = (): string => JSON.stringify(attempts.slice(first).map(kinds))
      assert.equal(attempts.length - first, 1, `one attempt, then the pause; the attempts: ${tried()}`)
      store.heal()
      clock.tick(49)
      assert.equal(attempts.length - first, 1, `nothing before the first pause (50 ms) is over; the attempts: ${tried()}`)
      clock.tick(1)
      assert.equal(attempts.length - first, 2, 'tried again when the pause is over')
      clock.tick(10_000)
      await nextTurn()
      assert.equal(attempts.length - first, 2, 'and no other retry')
      const keeperStored = (await storedState(store.memory)).sessions.find((s) => s.clientId === 'keeper')
      assert.deepEqual(keeperStored?.deliveries.map((d) => d.message.payload.toString()), ['kept'])
    } finally {
      store.heal()
      await b.close()
    }
  })
})

describe('review fixes: maxQueued', () => {
  test('with a durable store, messages to an online subscriber with room in its window do not count against maxQueued while they wait for their commit', async () => {
    const store = new GatedStore()
    const b = await startBroker({ persistence: store.adapter, limits: { maxQueued: 5, maxInflight: 100 } })
    try {
      const { raw: sub } = await b.rawConnect({ clientId: 'sub', cleanSession: false })
      await sub.subscribe('t', 1)
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' })
      for (let i = 1; i <= 50; i++) pub.publish('t', `m${i}`, 1, { packetId: i })
      await pub.until(() => pub.pending().filter((p) => p.type === 'puback').length === 50, undefined, '50 PUBACKs')
      assert.equal(b.broker.getSession('sub')?.dropped, 0, 'messages dropped for a full queue')
      await until(() => sub.publishes().length >= 50, undefined, () => `50 messages at the subscriber (got ${sub.publishes().length})`)
      assert.deepEqual(
        sub.publishes().map((p) => p.payload.toString()),
        Array.from({ length: 50 }, (_, i) => `m${i + 1}`),
      )
    } finally {
      await b.close()
    }
  })
})
