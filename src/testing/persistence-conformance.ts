import assert from 'node:assert/strict'
import { describe, it, type TestContext } from 'node:test'
import type {
  Awaitable,
  PersistenceAdapter,
  PersistenceOp,
  RestoredDelivery,
  RestoredSession,
  RestoredState,
  StoredMessage,
} from '../persistence/adapter.js'
import type { Properties, Subscription, WillMessage } from '../protocol/packets.js'
import { crashBatch, crashExpected, crashLastBatch, runAndKill } from './crash.js'
import { assertRestoredShape, assertSameState, plainState } from './state.js'

/**
 * How the kill -9 test runs a child process that writes to a durable store, and how this process
 * then looks at what it left. The child is `node <execArgv> <module> <store.args>`; the module
 * calls `runCrashChild` (from `culex-mqtt/testing`) with a function making the adapter from those arguments.
 */
export interface CrashChildOptions {
  /** The child's module (a path, or a `file:` URL such as `new URL('./crash-child.ts', import.meta.url)`); it calls `runCrashChild`. */
  module: string | URL
  /**
   * A fresh, empty store for one child: the command-line arguments that point the child at it
   * (a SQLite file path; a Redis URL and key prefix) and how to reach it from this process.
   */
  store(): Awaitable<CrashStore>
  /** Node options before the module; default `['--import', 'tsx']`, so a `.ts` fixture runs (tsx must be installed). */
  execArgv?: readonly string[]
  /**
   * How many batches the child must report committed before it is killed: a whole number drawn at
   * random in `[min, max]` for every run, so the kill lands at a different point each time (the
   * test's diagnostics say where). Default `{ min: 1, max: 100 }`.
   */
  killAfter?: { min: number; max: number }
  /** Children killed per test, each on a fresh store; default 3. */
  runs?: number
  /** The kill -9 test's timeout in ms, all runs together; default 60,000. */
  timeout?: number
}

/** One store for the kill -9 test (see {@link CrashChildOptions.store}). */
export interface CrashStore {
  /** The child's arguments after the module path: `runCrashChild`'s `create` receives them. */
  args: readonly string[]
  /** A new adapter, in this process, on the store the child wrote to: called once the child is gone, and again to reopen it. */
  adapter(): Awaitable<PersistenceAdapter>
  /** Removes the store; called once the run is checked, whether it passed or not. */
  dispose?(): Awaitable<void>
}

/** What {@link persistenceConformance} needs to know about the adapter under test. */
export interface ConformanceOptions {
  /** A new adapter on a fresh, empty store (every test makes its own). */
  create(): Awaitable<PersistenceAdapter>
  /**
   * Another adapter instance on the same store as `adapter`, called after `adapter.close()`:
   * what a restarted process would make. Default: `adapter` itself, opened again (the memory
   * adapter's only way to restart).
   */
  reopen?(adapter: PersistenceAdapter): Awaitable<PersistenceAdapter>
  /**
   * Makes the store fail, so that `commit` throws or rejects, and returns the function that
   * repairs it (a Redis adapter may stop the connection and start it again; an adapter on a file
   * may make it read-only). Absent: the failure tests are skipped.
   */
  breakStore?(adapter: PersistenceAdapter): Awaitable<() => Awaitable<void>>
  /**
   * Whether a commit that failed may still have stored its whole batch: the contract allows it of
   * an adapter that cannot tell (the operations are idempotent). Default false: a failed commit
   * must have stored nothing. Part of a batch is never acceptable.
   */
  failedCommitsMayApply?: boolean
  /** How to run the kill -9 test (durable adapters). Absent: that test is skipped. */
  crashChild?: CrashChildOptions
  /** Removes the store of a test once it is over (the adapter, its last instance, is closed by then). */
  cleanup?(adapter: PersistenceAdapter): Awaitable<void>
  /** Every test's timeout in ms, except the kill -9 test's; default 10,000. */
  timeout?: number
}

/**
 * Registers the persistence adapter conformance suite with `node:test`: what every
 * {@link PersistenceAdapter} must do, whatever it stores into. Call it at the top level of a test
 * file (it calls `describe` and `it`); run the file with `node --test`.
 *
 * Every test makes its own adapter on a fresh store with `create`, opens it, commits batches
 * (awaiting each, as the broker does), closes it, makes it again with `reopen` and checks what
 * `open()` restores, as plain data: order of sessions, retained messages, subscriptions and
 * incoming QoS 2 identifiers does not matter; deliveries come in `seq` order; payloads and
 * correlation data are Buffers with the same bytes; an optional field set to `undefined` is the
 * same as an absent one. Wherever `open()` reports `lastMessageId`, it is at least the highest
 * `messageId` committed. Only the public interface (`open`, `commit`, `close`) is used.
 *
 * The failure tests run only with `breakStore`, the kill -9 test only with `crashChild`.
 *
 * @param name names the suite in the test report.
 *
 * @example
 * The memory adapter (`test/persistence/memory.test.ts`):
 * ```ts
 * import { MemoryPersistence } from 'culex-mqtt'
 * import { persistenceConformance } from 'culex-mqtt/testing'
 *
 * persistenceConformance('MemoryPersistence', { create: () => new MemoryPersistence() })
 * ```
 *
 * @example
 * A durable adapter on a file, with the kill -9 test:
 * ```ts
 * import { mkdtempSync, rmSync } from 'node:fs'
 * import { tmpdir } from 'node:os'
 * import { join } from 'node:path'
 * import { after } from 'node:test'
 * import { SqlitePersistence } from 'culex-mqtt/sqlite'
 * import { persistenceConformance } from 'culex-mqtt/testing'
 *
 * const dir = mkdtempSync(join(tmpdir(), 'culex-sqlite-'))
 * after(() => rmSync(dir, { recursive: true, force: true }))
 * let n = 0
 * const file = (): string => join(dir, `store-${++n}.db`)
 *
 * persistenceConformance('SqlitePersistence', {
 *   create: () => new SqlitePersistence({ path: file() }),
 *   reopen: (adapter) => new SqlitePersistence({ path: (adapter as SqlitePersistence).path }),
 *   crashChild: {
 *     // the fixture: await runCrashChild(([path]) => new SqlitePersistence({ path: path! }))
 *     module: new URL('./fixtures/sqlite-crash-child.ts', import.meta.url),
 *     store: () => {
 *       const path = file()
 *       return { args: [path], adapter: () => new SqlitePersistence({ path }) }
 *     },
 *   },
 * })
 * ```
 */
export function persistenceConformance(name: string, options: ConformanceOptions): void {
  const timeout = options.timeout ?? 10_000
  const test = (title: string, fn: (store: Store, t: TestContext) => Promise<void>): void => {
    it(title, { timeout }, (t) => withStore(options, (store) => fn(store, t)))
  }
  const noBreak = options.breakStore === undefined ? 'no breakStore in the conformance options' : false

  describe(`persistence conformance: ${name}`, () => {
    describe('every operation round-trips through commit, close, reopen and open', () => {
      test('a fresh store opens to an empty state, and is still empty reopened', async (store) => {
        assertState(await store.restart(), { sessions: [], retained: [] })
      })

      test('sessionCreate: a session with its expiry interval and nothing else', async (store) => {
        await store.commit([
          { op: 'sessionCreate', clientId: 'zero', expiryInterval: 0 },
          { op: 'sessionCreate', clientId: 'hour', expiryInterval: 3600 },
          { op: 'sessionCreate', clientId: 'never', expiryInterval: 0xffff_ffff },
        ])
        assertState(await store.restart(), {
          sessions: [session('zero'), session('hour', { expiryInterval: 3600 }), session('never', { expiryInterval: 0xffff_ffff })],
          retained: [],
        })
      })

      test('sessionUpdate: sets the expiry interval and disconnectedAt; one without disconnectedAt clears it', async (store) => {
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'sessionUpdate', clientId: 'c', expiryInterval: 120, disconnectedAt: T0 + 5 },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 120, disconnectedAt: T0 + 5 })], retained: [] }, 'disconnected')
        await store.commit([{ op: 'sessionUpdate', clientId: 'c', expiryInterval: 30 }])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 30 })], retained: [] }, 'connected again')
      })

      test("subscribe: every subscription option, a '$share/g/x' filter, and a same filter replacing the subscription whole", async (store) => {
        const subscriptions: Subscription[] = [
          { topicFilter: 'a/+/c', qos: 0 },
          { topicFilter: 'sensors/#', qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionIdentifier: 268_435_455 },
          { topicFilter: '$share/g/x', qos: 1, retainHandling: 1, subscriptionIdentifier: 1 },
          { topicFilter: 'x', qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0 },
        ]
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          ...subscriptions.map((subscription): PersistenceOp => ({ op: 'subscribe', clientId: 'c', subscription })),
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, subscriptions })], retained: [] }, 'subscribed')
        // The new subscription has none of the old one's options: a merge would keep them.
        const replaced: Subscription = { topicFilter: 'sensors/#', qos: 1 }
        await store.commit([{ op: 'subscribe', clientId: 'c', subscription: replaced }])
        assertState(
          await store.restart(),
          { sessions: [session('c', { expiryInterval: 60, subscriptions: [subscriptions[0]!, replaced, subscriptions[2]!, subscriptions[3]!] })], retained: [] },
          'replaced',
        )
      })

      test('unsubscribe: removes that topic filter only (a shared one by its full filter); an unknown one is no error', async (store) => {
        const sub = (topicFilter: string): Subscription => ({ topicFilter, qos: 1 })
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'subscribe', clientId: 'c', subscription: sub('x') },
          { op: 'subscribe', clientId: 'c', subscription: sub('$share/g/x') },
          { op: 'subscribe', clientId: 'c', subscription: sub('y') },
        ])
        await store.commit([
          { op: 'unsubscribe', clientId: 'c', topicFilter: '$share/g/x' },
          { op: 'unsubscribe', clientId: 'c', topicFilter: 'never/subscribed' },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, subscriptions: [sub('x'), sub('y')] })], retained: [] }, 'shared one gone')
        await store.commit([{ op: 'unsubscribe', clientId: 'c', topicFilter: 'x' }])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, subscriptions: [sub('y')] })], retained: [] }, 'x gone')
      })

      test('message and enqueue: a message with every MQTT 5 property kind, deliveries with and without subscriptionIds and shareGroup', async (store) => {
        const full = message('full/props', Buffer.from([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff]), { qos: 2, retain: true, properties: FULL_PROPERTIES, receivedAt: T0 + 1 })
        const bare = message('bare', 'no properties at all')
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'message', messageId: 1, message: full },
          { op: 'message', messageId: 2, message: bare },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 2, retain: true, subscriptionIds: [1, 268_435_455], shareGroup: '$share/g/full/#' },
          { op: 'enqueue', clientId: 'c', seq: 2, messageId: 2, qos: 1, retain: false },
        ])
        assertState(await store.restart(), {
          sessions: [
            session('c', {
              expiryInterval: 60,
              deliveries: [
                delivery(1, 1, full, { qos: 2, retain: true, subscriptionIds: [1, 268_435_455], shareGroup: '$share/g/full/#' }),
                delivery(2, 2, bare),
              ],
            }),
          ],
          retained: [],
        })
      })

      test("sent: the delivery is restored 'sent' with its packet identifier", async (store) => {
        const m = message('t')
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'message', messageId: 1, message: m },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 1, retain: false },
          { op: 'enqueue', clientId: 'c', seq: 2, messageId: 1, qos: 2, retain: false },
          { op: 'enqueue', clientId: 'c', seq: 3, messageId: 1, qos: 1, retain: false },
        ])
        await store.commit([
          { op: 'sent', clientId: 'c', seq: 1, packetId: 1 },
          { op: 'sent', clientId: 'c', seq: 2, packetId: 65_535 },
        ])
        assertState(await store.restart(), {
          sessions: [
            session('c', {
              expiryInterval: 60,
              deliveries: [delivery(1, 1, m, { state: 'sent', packetId: 1 }), delivery(2, 1, m, { qos: 2, state: 'sent', packetId: 65_535 }), delivery(3, 1, m)],
            }),
          ],
          retained: [],
        })
      })

      test("received: a sent QoS 2 delivery whose PUBREC came is restored 'received', its packet identifier kept", async (store) => {
        const m = message('t', 'exactly once', { qos: 2 })
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'message', messageId: 1, message: m },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 2, retain: false },
        ])
        await store.commit([{ op: 'sent', clientId: 'c', seq: 1, packetId: 7 }])
        assertState(
          await store.restart(),
          { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(1, 1, m, { qos: 2, state: 'sent', packetId: 7 })] })], retained: [] },
          'sent',
        )
        await store.commit([{ op: 'received', clientId: 'c', seq: 1 }])
        assertState(
          await store.restart(),
          { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(1, 1, m, { qos: 2, state: 'received', packetId: 7 })] })], retained: [] },
          'received',
        )
      })

      test('dequeue: removes that delivery, queued or sent, and keeps the others; an unknown seq is no error', async (store) => {
        const m = message('t')
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'message', messageId: 1, message: m },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 1, retain: false },
          { op: 'enqueue', clientId: 'c', seq: 2, messageId: 1, qos: 1, retain: false },
          { op: 'enqueue', clientId: 'c', seq: 3, messageId: 1, qos: 1, retain: false },
          { op: 'sent', clientId: 'c', seq: 1, packetId: 1 },
        ])
        await store.commit([
          { op: 'dequeue', clientId: 'c', seq: 2 },
          { op: 'dequeue', clientId: 'c', seq: 99 },
        ])
        assertState(
          await store.restart(),
          { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(1, 1, m, { state: 'sent', packetId: 1 }), delivery(3, 1, m)] })], retained: [] },
          'one dequeued',
        )
        await store.commit([
          { op: 'dequeue', clientId: 'c', seq: 1 },
          { op: 'dequeue', clientId: 'c', seq: 3 },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60 })], retained: [] }, 'all dequeued')
      })

      test('qos2Received and qos2Released: the incoming packet identifiers received and not yet released', async (store) => {
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'qos2Received', clientId: 'c', packetId: 1 },
          { op: 'qos2Received', clientId: 'c', packetId: 2 },
          { op: 'qos2Received', clientId: 'c', packetId: 65_535 },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, incomingQos2: [1, 2, 65_535] })], retained: [] }, 'received')
        await store.commit([
          { op: 'qos2Released', clientId: 'c', packetId: 2 },
          { op: 'qos2Released', clientId: 'c', packetId: 999 },
          // A resent PUBLISH with an identifier already held (the broker may record it again): still one.
          { op: 'qos2Received', clientId: 'c', packetId: 1 },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, incomingQos2: [1, 65_535] })], retained: [] }, 'one released')
      })

      test('will: set without publishAt, then with publishAt, then set again without, then cleared with null', async (store) => {
        const reconnected: WillMessage = { topic: 'wills/c/2', payload: Buffer.from('second connection'), qos: 0, retain: false }
        const cases: Array<[string, PersistenceOp, RestoredSession['will']]> = [
          ['set at CONNECT', { op: 'will', clientId: 'c', will: WILL }, { message: WILL }],
          ['due after the connection ended', { op: 'will', clientId: 'c', will: WILL, publishAt: T0 + 30_000 }, { message: WILL, publishAt: T0 + 30_000 }],
          ['set by the next CONNECT', { op: 'will', clientId: 'c', will: reconnected }, { message: reconnected }],
          ['cleared', { op: 'will', clientId: 'c', will: null }, undefined],
        ]
        await store.commit([{ op: 'sessionCreate', clientId: 'c', expiryInterval: 60 }])
        for (const [step, op, will] of cases) {
          await store.commit([op])
          assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, will })], retained: [] }, step)
        }
      })

      test("retain and unretain: one retained message per topic, replaced by the topic's next, removed by unretain", async (store) => {
        const first = message('a/b', 'first', { retain: true, qos: 0, receivedAt: T0 + 1 })
        const rich = message('c', Buffer.from([0xde, 0xad]), { retain: true, qos: 2, properties: FULL_PROPERTIES, receivedAt: T0 + 2 })
        const second = message('a/b', 'second', { retain: true, qos: 1, receivedAt: T0 + 3 })
        await store.commit([
          { op: 'retain', message: first },
          { op: 'retain', message: rich },
        ])
        assertState(await store.restart(), { sessions: [], retained: [first, rich] }, 'retained')
        await store.commit([{ op: 'retain', message: second }])
        assertState(await store.restart(), { sessions: [], retained: [second, rich] }, 'replaced')
        await store.commit([
          { op: 'unretain', topic: 'c' },
          { op: 'unretain', topic: 'never/retained' },
        ])
        assertState(await store.restart(), { sessions: [], retained: [second] }, 'unretained')
      })

      test('unretain with receivedAt removes the retained message only if it is that message (compare and delete)', async (store) => {
        const a = message('a', 'expired one', { retain: true, receivedAt: T0 + 1 })
        const b = message('b', 'newer one', { retain: true, receivedAt: T0 + 2 })
        await store.commit([
          { op: 'retain', message: a },
          { op: 'retain', message: b },
        ])
        await store.commit([
          { op: 'unretain', topic: 'a', receivedAt: T0 + 1 },
          // As an expiry timer of an older message on 'b' would: it must not take the newer one with it.
          { op: 'unretain', topic: 'b', receivedAt: T0 + 1 },
        ])
        assertState(await store.restart(), { sessions: [], retained: [b] })
      })

      test('lastMessageId, when reported, is at least the highest messageId committed, even once those messages are gone', async (store, t) => {
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'message', messageId: 5, message: message('five') },
          { op: 'message', messageId: 17, message: message('seventeen') },
          { op: 'message', messageId: 9, message: message('nine') },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 5, qos: 1, retain: false },
          { op: 'enqueue', clientId: 'c', seq: 2, messageId: 17, qos: 1, retain: false },
          { op: 'enqueue', clientId: 'c', seq: 3, messageId: 9, qos: 1, retain: false },
        ])
        const held = await store.restart()
        assertLastMessageId(held, 17, t)
        await store.commit([
          { op: 'dequeue', clientId: 'c', seq: 1 },
          { op: 'dequeue', clientId: 'c', seq: 2 },
          { op: 'sessionDelete', clientId: 'c' },
        ])
        const gone = await store.restart()
        assertState(gone, { sessions: [], retained: [] })
        assertLastMessageId(gone, 17, t)
      })

      test('operations naming a client without a session are ignored: no error, and no session appears', async (store) => {
        await store.commit([
          { op: 'sessionDelete', clientId: 'ghost' },
          { op: 'message', messageId: 1, message: message('t') },
          { op: 'sessionUpdate', clientId: 'ghost', expiryInterval: 60, disconnectedAt: T0 },
          { op: 'subscribe', clientId: 'ghost', subscription: { topicFilter: 't', qos: 1 } },
          { op: 'unsubscribe', clientId: 'ghost', topicFilter: 't' },
          { op: 'enqueue', clientId: 'ghost', seq: 1, messageId: 1, qos: 2, retain: false },
          { op: 'sent', clientId: 'ghost', seq: 1, packetId: 1 },
          { op: 'received', clientId: 'ghost', seq: 1 },
          { op: 'dequeue', clientId: 'ghost', seq: 1 },
          { op: 'qos2Received', clientId: 'ghost', packetId: 1 },
          { op: 'qos2Released', clientId: 'ghost', packetId: 1 },
          { op: 'will', clientId: 'ghost', will: WILL, publishAt: T0 },
        ])
        assertState(await store.restart(), { sessions: [], retained: [] })
      })

      test('an enqueue naming a messageId never committed is ignored: no error, and no delivery', async (store) => {
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 424_242, qos: 1, retain: false },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60 })], retained: [] })
      })
    })

    describe('batches', () => {
      test('operations apply in order within a batch: enqueue then dequeue leaves no delivery', async (store) => {
        const m = message('t')
        await store.commit([{ op: 'sessionCreate', clientId: 'c', expiryInterval: 60 }])
        await store.commit([
          { op: 'message', messageId: 1, message: m },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 1, retain: false },
          { op: 'enqueue', clientId: 'c', seq: 2, messageId: 1, qos: 1, retain: false },
          { op: 'dequeue', clientId: 'c', seq: 1 },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(2, 1, m)] })], retained: [] })
      })

      test('sessionDelete then sessionCreate in one batch gives a fresh, empty session; sessionCreate then sessionDelete none', async (store) => {
        await store.commit(fullSession('c', 1))
        await store.commit([
          { op: 'sessionDelete', clientId: 'c' },
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 10 },
          { op: 'sessionCreate', clientId: 'd', expiryInterval: 10 },
          { op: 'sessionDelete', clientId: 'd' },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 10 })], retained: [] })
      })

      test('retain then unretain in one batch leaves no retained message; unretain then retain leaves it', async (store) => {
        const gone = message('gone', 'x', { retain: true })
        const kept = message('kept', 'y', { retain: true })
        await store.commit([
          { op: 'retain', message: gone },
          { op: 'unretain', topic: 'gone' },
          { op: 'unretain', topic: 'kept' },
          { op: 'retain', message: kept },
        ])
        assertState(await store.restart(), { sessions: [], retained: [kept] })
      })

      test("sessionCreate on an existing session replaces it: its subscriptions, deliveries, will and incoming QoS 2 identifiers go, others' deliveries of the same messages stay", async (store) => {
        await store.commit([...fullSession('c', 1), ...fullSession('other', 1)])
        const fresh: Subscription = { topicFilter: 'after/clean/start', qos: 0 }
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 5 },
          { op: 'subscribe', clientId: 'c', subscription: fresh },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 5, subscriptions: [fresh] }), fullSessionState('other', 1)], retained: [] })
      })

      test('committing the same batches twice (as a broker retrying) leaves the same state as committing them once', async (store) => {
        const { first, second } = idempotencyBatches()
        await store.commit(first)
        await store.commit(second)
        const once = plainState(await store.restart())
        // A second store, written as a broker that could not tell whether each commit took.
        const twice = await Store.create(options)
        await twice.run(async () => {
          await twice.commit(first)
          await twice.commit(first)
          await twice.commit(second)
          await twice.commit(second)
          assert.deepStrictEqual(plainState(await twice.restart()), once)
        })
      })

      test('enqueue twice does not duplicate the delivery; message twice keeps one message', async (store) => {
        const m = message('t', 'once', { qos: 2 })
        const enqueue: PersistenceOp = { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 2, retain: false, subscriptionIds: [4] }
        await store.commit([{ op: 'sessionCreate', clientId: 'c', expiryInterval: 60 }, { op: 'message', messageId: 1, message: m }, { op: 'message', messageId: 1, message: m }, enqueue, enqueue])
        await store.commit([{ op: 'message', messageId: 1, message: m }, enqueue])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(1, 1, m, { qos: 2, subscriptionIds: [4] })] })], retained: [] })
      })

      test('a message stored once and enqueued to three sessions is restored for each of them', async (store) => {
        const m = message('fan/out', Buffer.from('to three'), { qos: 2, properties: FULL_PROPERTIES })
        await store.commit([
          { op: 'sessionCreate', clientId: 'a', expiryInterval: 60 },
          { op: 'sessionCreate', clientId: 'b', expiryInterval: 60 },
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'message', messageId: 1, message: m },
          { op: 'enqueue', clientId: 'a', seq: 1, messageId: 1, qos: 1, retain: false },
          { op: 'enqueue', clientId: 'b', seq: 7, messageId: 1, qos: 2, retain: true, subscriptionIds: [2] },
          { op: 'enqueue', clientId: 'c', seq: 100, messageId: 1, qos: 2, retain: false, shareGroup: '$share/g/fan/+' },
        ])
        assertState(await store.restart(), {
          sessions: [
            session('a', { expiryInterval: 60, deliveries: [delivery(1, 1, m)] }),
            session('b', { expiryInterval: 60, deliveries: [delivery(7, 1, m, { qos: 2, retain: true, subscriptionIds: [2] })] }),
            session('c', { expiryInterval: 60, deliveries: [delivery(100, 1, m, { qos: 2, shareGroup: '$share/g/fan/+' })] }),
          ],
          retained: [],
        })
      })

      test('a message still held by a delivery can be enqueued again later, as a shared subscription hands it to another member', async (store) => {
        const m = message('shared/work', 'handed over', { qos: 2 })
        await store.commit([
          ...['a', 'b', 'c', 'd'].map((clientId): PersistenceOp => ({ op: 'sessionCreate', clientId, expiryInterval: 60 })),
          { op: 'message', messageId: 1, message: m },
          { op: 'enqueue', clientId: 'a', seq: 1, messageId: 1, qos: 2, retain: false, shareGroup: '$share/g/shared/+' },
          { op: 'enqueue', clientId: 'b', seq: 1, messageId: 1, qos: 1, retain: false },
        ])
        // a leaves the group: its delivery goes to c; b (a plain subscriber) still holds the message.
        await store.commit([
          { op: 'dequeue', clientId: 'a', seq: 1 },
          { op: 'enqueue', clientId: 'c', seq: 5, messageId: 1, qos: 2, retain: false, shareGroup: '$share/g/shared/+' },
        ])
        // c leaves too: the new member's delivery joins before c's goes, so the message is held throughout.
        await store.commit([
          { op: 'enqueue', clientId: 'd', seq: 1, messageId: 1, qos: 2, retain: false, shareGroup: '$share/g/shared/+' },
          { op: 'dequeue', clientId: 'c', seq: 5 },
        ])
        assertState(await store.restart(), {
          sessions: [
            session('a', { expiryInterval: 60 }),
            session('b', { expiryInterval: 60, deliveries: [delivery(1, 1, m)] }),
            session('c', { expiryInterval: 60 }),
            session('d', { expiryInterval: 60, deliveries: [delivery(1, 1, m, { qos: 2, shareGroup: '$share/g/shared/+' })] }),
          ],
          retained: [],
        })
      })

      test('a message dequeued from every session holding it (or whose session ends) leaves no delivery behind, and no error', async (store) => {
        const m = message('fan/out', 'to three')
        await store.commit([
          ...['a', 'b', 'c'].map((clientId): PersistenceOp => ({ op: 'sessionCreate', clientId, expiryInterval: 60 })),
          { op: 'message', messageId: 1, message: m },
          ...['a', 'b', 'c'].map((clientId): PersistenceOp => ({ op: 'enqueue', clientId, seq: 1, messageId: 1, qos: 1, retain: false })),
        ])
        await store.commit([
          { op: 'dequeue', clientId: 'a', seq: 1 },
          { op: 'dequeue', clientId: 'b', seq: 1 },
        ])
        await store.commit([{ op: 'sessionDelete', clientId: 'c' }])
        assertState(await store.restart(), { sessions: [session('a', { expiryInterval: 60 }), session('b', { expiryInterval: 60 })], retained: [] })
      })

      test('sessionDelete removes everything of that client and nothing of the others; an unknown client is no error', async (store) => {
        const retained = message('kept/retained', 'stays', { retain: true })
        // 'kept' holds the same messages as 'gone': deleting 'gone' must not take them from 'kept'.
        await store.commit([...fullSession('gone', 1), ...fullSession('kept', 1), { op: 'retain', message: retained }])
        await store.commit([
          { op: 'sessionDelete', clientId: 'gone' },
          { op: 'sessionDelete', clientId: 'never-was' },
        ])
        assertState(await store.restart(), { sessions: [fullSessionState('kept', 1)], retained: [retained] })
      })

      test('deliveries are restored in seq order when enqueued over many batches interleaved with other clients', async (store) => {
        // Numeric order differs from text order (9 < 10 < 100), and one seq passes 2^32.
        const seqs = [1, 2, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 65_536, 2 ** 31, 2 ** 32 + 5]
        const clients = ['x', 'y', 'z']
        await store.commit(clients.map((clientId): PersistenceOp => ({ op: 'sessionCreate', clientId, expiryInterval: 60 })))
        const expected = new Map(clients.map((c) => [c, [] as RestoredDelivery[]]))
        let messageId = 0
        for (const [i, seq] of seqs.entries()) {
          const ops: PersistenceOp[] = []
          // A different client first in each batch, and the order reversed every other batch.
          const order = clients.map((_, k) => clients[(i + k) % clients.length]!)
          if (i % 2 === 1) order.reverse()
          for (const clientId of order) {
            const m = message(`interleaved/${clientId}/${seq}`)
            ops.push({ op: 'message', messageId: ++messageId, message: m }, { op: 'enqueue', clientId, seq, messageId, qos: 1, retain: false })
            expected.get(clientId)!.push(delivery(seq, messageId, m))
          }
          await store.commit(ops)
        }
        await store.commit([
          { op: 'dequeue', clientId: 'y', seq: 10 },
          { op: 'dequeue', clientId: 'z', seq: 999 },
        ])
        const drop = (clientId: string, seq: number): RestoredDelivery[] => expected.get(clientId)!.filter((d) => d.seq !== seq)
        assertState(await store.restart(), {
          sessions: [
            session('x', { expiryInterval: 60, deliveries: expected.get('x')! }),
            session('y', { expiryInterval: 60, deliveries: drop('y', 10) }),
            session('z', { expiryInterval: 60, deliveries: drop('z', 999) }),
          ],
          retained: [],
        })
      })

      test('200 batches of 50 operations, each awaited before the next, are all there after reopen', async (store) => {
        const clients = Array.from({ length: 10 }, (_, k) => `bulk-${k}`)
        await store.commit(clients.map((clientId): PersistenceOp => ({ op: 'sessionCreate', clientId, expiryInterval: 60 })))
        const sessions = clients.map((clientId) => session(clientId, { expiryInterval: 60 }))
        const retained: StoredMessage[] = []
        let messageId = 0
        for (let i = 1; i <= 200; i++) {
          const ops: PersistenceOp[] = []
          for (const [k, clientId] of clients.entries()) {
            const s = sessions[k]!
            const m = message(`bulk/${i}/${k}`, `batch ${i}, client ${k}`, { receivedAt: T0 + i })
            const r = { ...m, retain: true }
            const subscription: Subscription = { topicFilter: `bulk/${i}/${k}/#`, qos: 1 }
            ops.push(
              { op: 'message', messageId: ++messageId, message: m },
              { op: 'enqueue', clientId, seq: i, messageId, qos: 1, retain: false },
              { op: 'subscribe', clientId, subscription },
              { op: 'qos2Received', clientId, packetId: i },
              { op: 'retain', message: r },
            )
            s.deliveries.push(delivery(i, messageId, m))
            s.subscriptions.push(subscription)
            s.incomingQos2.push(i)
            retained.push(r)
          }
          assert.equal(ops.length, 50)
          await store.commit(ops)
        }
        assertState(await store.restart(), { sessions, retained })
      })
    })

    describe('values', () => {
      test('a 256 KiB payload round-trips byte for byte, in a delivery, a retained message and a will', async (store) => {
        const payload = Buffer.alloc(256 * 1024)
        for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >>> 8)) & 0xff
        const m = message('large', payload, { qos: 1 })
        const r = { ...m, retain: true }
        const will: WillMessage = { topic: 'large/will', payload, qos: 1, retain: false }
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'message', messageId: 1, message: m },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 1, retain: false },
          { op: 'retain', message: r },
          { op: 'will', clientId: 'c', will },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(1, 1, m)], will: { message: will } })], retained: [r] })
      })

      test('a topic of 1,000 characters, in a subscription, a delivery, a retained message (unretained too) and a will', async (store) => {
        const topic = `long/${'x'.repeat(995)}`
        const other = `long/${'y'.repeat(995)}`
        assert.equal(topic.length, 1000)
        const m = message(topic, 'long topic')
        const r = { ...m, retain: true }
        const will: WillMessage = { topic, payload: Buffer.from('long will'), qos: 0, retain: false }
        const subscription: Subscription = { topicFilter: topic, qos: 1 }
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'subscribe', clientId: 'c', subscription },
          { op: 'message', messageId: 1, message: m },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 1, retain: false },
          { op: 'retain', message: r },
          { op: 'retain', message: { ...r, topic: other } },
          { op: 'will', clientId: 'c', will },
        ])
        await store.commit([{ op: 'unretain', topic: other }])
        assertState(await store.restart(), {
          sessions: [session('c', { expiryInterval: 60, subscriptions: [subscription], deliveries: [delivery(1, 1, m)], will: { message: will } })],
          retained: [r],
        })
      })

      test('unicode client identifiers and topics, kept apart as written (no normalization, no case folding)', async (store) => {
        // 'café' composed, decomposed and in capitals: three clients to MQTT, which compares code points.
        const clientIds = ['клиент 🐝 客户端', 'caf\u00e9', 'cafe\u0301', 'CAF\u00c9']
        const topics = ['données/温度/🌡', 'Données/温度/🌡']
        const ops: PersistenceOp[] = []
        const sessions: RestoredSession[] = []
        const retained: StoredMessage[] = []
        for (const [i, topic] of topics.entries()) {
          const r = message(topic, `retained ${i}`, { retain: true, properties: { userProperties: [['ключ', '值 🐝']] } })
          ops.push({ op: 'message', messageId: i + 1, message: message(topic, `for all ${i}`) }, { op: 'retain', message: r })
          retained.push(r)
        }
        for (const [i, clientId] of clientIds.entries()) {
          const subscription: Subscription = { topicFilter: `données/+/${clientId}`, qos: 1 }
          const will: WillMessage = { topic: `départ/${clientId}`, payload: Buffer.from(clientId), qos: 0, retain: false }
          ops.push(
            { op: 'sessionCreate', clientId, expiryInterval: i },
            { op: 'subscribe', clientId, subscription },
            { op: 'enqueue', clientId, seq: 1, messageId: (i % topics.length) + 1, qos: 1, retain: false },
            { op: 'will', clientId, will },
          )
          sessions.push(session(clientId, { expiryInterval: i, subscriptions: [subscription], deliveries: [delivery(1, (i % topics.length) + 1, message(topics[i % topics.length]!, `for all ${i % topics.length}`))], will: { message: will } }))
        }
        await store.commit(ops)
        assertState(await store.restart(), { sessions, retained })
      })

      test('an empty payload stays an empty Buffer, in a delivery, a retained message and a will', async (store) => {
        const m = message('empty', Buffer.alloc(0))
        const r = { ...m, retain: true }
        const will: WillMessage = { topic: 'empty/will', payload: Buffer.alloc(0), qos: 0, retain: false }
        await store.commit([
          { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
          { op: 'message', messageId: 1, message: m },
          { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 1, retain: false },
          { op: 'retain', message: r },
          { op: 'will', clientId: 'c', will },
        ])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(1, 1, m)], will: { message: will } })], retained: [r] })
      })
    })

    describe('failures', () => {
      const failing = (title: string, fn: (store: Store, breakStore: NonNullable<ConformanceOptions['breakStore']>) => Promise<void>): void => {
        it(title, { timeout, skip: noBreak }, () => withStore(options, (store) => fn(store, options.breakStore!)))
      }

      failing('a commit while the store is broken rejects or throws, every time it is tried', async (store, breakStore) => {
        await store.commit(FAILURE.before)
        const repair = await breakStore(store.adapter)
        try {
          await store.commitFails(FAILURE.failed, 'first attempt')
          await store.commitFails(FAILURE.failed, 'second attempt')
        } finally {
          await repair()
        }
      })

      failing('a failed commit stored none of its batch; after repair the batch commits again, and a new one after it', async (store, breakStore) => {
        await store.commit(FAILURE.before)
        const repair = await breakStore(store.adapter)
        try {
          await store.commitFails(FAILURE.failed)
        } finally {
          await repair()
        }
        const after = await store.restart()
        if (options.failedCommitsMayApply === true && plainEqual(after, FAILURE.expectedWithFailed)) {
          // Allowed by failedCommitsMayApply: the whole batch, never a part.
        } else {
          assertState(after, FAILURE.expectedBefore, 'after the failed commit, repaired and reopened: none of the failed batch')
        }
        await store.commit(FAILURE.failed)
        await store.commit(FAILURE.next)
        assertState(await store.restart(), FAILURE.expectedAfter, 'the failed batch committed again, then a new one')
      })

      failing('after a failure the same instance takes the failed batch again and the next ones, as the broker retries', async (store, breakStore) => {
        await store.commit(FAILURE.before)
        const repair = await breakStore(store.adapter)
        try {
          await store.commitFails(FAILURE.failed, 'first attempt')
          await store.commitFails(FAILURE.failed, 'second attempt')
        } finally {
          await repair()
        }
        await store.commit(FAILURE.failed)
        await store.commit(FAILURE.next)
        assertState(await store.restart(), FAILURE.expectedAfter)
      })
    })

    describe('crash', () => {
      const crash = options.crashChild
      it(
        'after kill -9 of a process committing batches, every batch it reported committed is there, and no batch is there in part',
        { timeout: crash?.timeout ?? 60_000, skip: crash === undefined ? 'no crashChild in the conformance options' : false },
        async (t) => {
          const { module, execArgv = ['--import', 'tsx'], killAfter = { min: 1, max: 100 }, runs = 3 } = crash!
          assert.ok(Number.isInteger(killAfter.min) && killAfter.min >= 1 && killAfter.max >= killAfter.min, 'crashChild.killAfter: 1 <= min <= max')
          for (let run = 1; run <= runs; run++) {
            // Math.random: the kill should land somewhere else every time the suite runs; the diagnostics say where.
            const target = killAfter.min + Math.floor(Math.random() * (killAfter.max - killAfter.min + 1))
            const crashStore = await crash!.store()
            let adapter: PersistenceAdapter | undefined
            try {
              const { printed } = await runAndKill(module, crashStore.args, execArgv, target, t.signal)
              adapter = await crashStore.adapter()
              let state = await adapter.open()
              assertRestoredShape(state, `run ${run}, after the kill`)
              const last = crashLastBatch(state)
              t.diagnostic(`run ${run}: SIGKILL sent on 'committed ${target}'; the child reported ${printed} batches committed in all; the store holds batches 1..${last}`)
              assert.ok(last >= printed, `run ${run}: the child reported batch ${printed} committed, and the store holds only up to batch ${last}`)
              assertState(state, crashExpected(last), `run ${run}: batches 1..${last} whole, nothing of batch ${last + 1} or later`)
              if (state.lastMessageId !== undefined) assert.ok(state.lastMessageId >= last, `run ${run}: lastMessageId ${state.lastMessageId} >= ${last}`)
              // The store came out of the crash usable: it takes the next batch and keeps it.
              await adapter.commit(crashBatch(last + 1))
              await adapter.close()
              adapter = await crashStore.adapter()
              state = await adapter.open()
              assertState(state, crashExpected(last + 1), `run ${run}: batch ${last + 1}, committed after the crash`)
              await adapter.close()
              adapter = undefined
            } finally {
              // A failed check leaves the adapter open: close it (quietly, the failure says more), then remove the store.
              await Promise.resolve(adapter?.close()).catch(() => {})
              await crashStore.dispose?.()
            }
          }
        },
      )
    })

    describe('lifecycle', () => {
      test('close() resolves, and open() after close() finds everything committed, time after time', async (store) => {
        const m = message('t', 'kept')
        await store.commit([{ op: 'sessionCreate', clientId: 'c', expiryInterval: 60 }, { op: 'message', messageId: 1, message: m }, { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 1, retain: false }])
        // restart awaits close(): a close that never settles fails the test by its timeout.
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(1, 1, m)] })], retained: [] }, 'first reopen')
        await store.commit([{ op: 'retain', message: { ...m, retain: true } }])
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(1, 1, m)] })], retained: [{ ...m, retain: true }] }, 'second reopen')
        assertState(await store.restart(), { sessions: [session('c', { expiryInterval: 60, deliveries: [delivery(1, 1, m)] })], retained: [{ ...m, retain: true }] }, 'reopened without commits')
      })
    })
  })
}

/**
 * One test's store: the adapter under test, opened, with what the test committed through it.
 * Every restart goes close → reopen → open, and every open is checked for shape and for
 * `lastMessageId`.
 */
class Store {
  private opened = false
  /** The highest messageId of any commit that resolved: `lastMessageId`, when reported, is no lower. */
  private highestMessageId = 0

  private constructor(
    private readonly options: ConformanceOptions,
    public adapter: PersistenceAdapter,
  ) {}

  /** A new adapter on a fresh store, opened and checked empty. */
  static async create(options: ConformanceOptions): Promise<Store> {
    const store = new Store(options, await options.create())
    const state = await store.open('a fresh store')
    assert.deepStrictEqual(plainState(state), { sessions: [], retained: [] }, 'create() gave a fresh, empty store')
    return store
  }

  /** Runs `fn`, then closes the adapter and lets the options remove the store, whatever happened. */
  async run(fn: () => Promise<void>): Promise<void> {
    let failure: { error: unknown } | undefined
    try {
      await fn()
    } catch (error) {
      failure = { error }
    }
    try {
      if (this.opened) await this.close()
      await this.options.cleanup?.(this.adapter)
    } catch (error) {
      // The test's own failure says more than a close that failed after it.
      failure ??= { error }
    }
    if (failure !== undefined) throw failure.error
  }

  async commit(ops: readonly PersistenceOp[]): Promise<void> {
    await this.adapter.commit(ops)
    for (const op of ops) if (op.op === 'message' && op.messageId > this.highestMessageId) this.highestMessageId = op.messageId
  }

  /** Commits `ops` on a broken store, which must refuse them: throw, or reject. */
  async commitFails(ops: readonly PersistenceOp[], attempt = 'the commit'): Promise<void> {
    await assert.rejects(async () => this.adapter.commit(ops), `${attempt} on a broken store throws or rejects`)
  }

  /** close → reopen → open, as a restarted broker. */
  async restart(): Promise<RestoredState> {
    await this.close()
    this.adapter = await (this.options.reopen?.(this.adapter) ?? this.adapter)
    return this.open('reopened')
  }

  private async open(where: string): Promise<RestoredState> {
    const state = await this.adapter.open()
    this.opened = true
    assertRestoredShape(state, `open() of ${where}`)
    if (state.lastMessageId !== undefined) {
      assert.ok(
        typeof state.lastMessageId === 'number' && state.lastMessageId >= this.highestMessageId,
        `lastMessageId ${String(state.lastMessageId)} is at least ${this.highestMessageId}, the highest messageId committed`,
      )
    }
    return state
  }

  private async close(): Promise<void> {
    this.opened = false
    await this.adapter.close()
  }
}

function withStore(options: ConformanceOptions, fn: (store: Store) => Promise<void>): Promise<void> {
  return Store.create(options).then((store) => store.run(() => fn(store)))
}

const assertState = assertSameState

function plainEqual(actual: RestoredState, expected: RestoredState): boolean {
  try {
    assertSameState(actual, expected)
    return true
  } catch {
    return false
  }
}

function assertLastMessageId(state: RestoredState, atLeast: number, t: TestContext): void {
  if (state.lastMessageId === undefined) {
    t.diagnostic('lastMessageId not reported')
    return
  }
  assert.ok(state.lastMessageId >= atLeast, `lastMessageId ${state.lastMessageId} >= ${atLeast}`)
}

// --- Fixtures -------------------------------------------------------------------------------

/** Timestamps start here (ms since the epoch); any fixed value does. */
const T0 = 1_700_000_000_000

/**
 * A message's properties of every kind MQTT 5 encodes: byte, four-byte integer, UTF-8 string,
 * binary data, variable byte integer (the subscription identifiers a PUBLISH carries) and string
 * pairs, in an order that is not sorted and with a repeated name, as user properties may be.
 */
const FULL_PROPERTIES: Properties = {
  payloadFormatIndicator: 1,
  messageExpiryInterval: 3600,
  contentType: 'application/json; charset=utf-8',
  responseTopic: 'replies/ünïcode/🐝',
  correlationData: Buffer.from([0x00, 0xff, 0x10, 0x80, 0x00]),
  subscriptionIdentifier: [3, 268_435_455],
  userProperties: [
    ['zeta', 'first'],
    ['alpha', 'second'],
    ['alpha', 'a repeated name, kept'],
    ['', ''],
    ['clé', 'värde 🐝'],
  ],
}

/** A will with the properties a will may have, the Will Delay Interval included. */
const WILL: WillMessage = {
  topic: 'wills/c',
  payload: Buffer.from([0x00, 0x01, 0xff]),
  qos: 2,
  retain: true,
  properties: {
    willDelayInterval: 30,
    payloadFormatIndicator: 0,
    messageExpiryInterval: 60,
    contentType: 'text/plain',
    responseTopic: 'wills/replies',
    correlationData: Buffer.from('corr'),
    userProperties: [
      ['b', '1'],
      ['a', '2'],
    ],
  },
}

function message(topic: string, payload: string | Buffer = topic, fields: Partial<StoredMessage> = {}): StoredMessage {
  return { topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: 1, retain: false, receivedAt: T0, ...fields }
}

function session(clientId: string, fields: Partial<Omit<RestoredSession, 'clientId'>> = {}): RestoredSession {
  return { clientId, expiryInterval: 0, subscriptions: [], deliveries: [], incomingQos2: [], ...fields }
}

function delivery(seq: number, messageId: number, message: StoredMessage, fields: Partial<RestoredDelivery> = {}): RestoredDelivery {
  return { seq, messageId, message, qos: 1, retain: false, state: 'queued', ...fields }
}

/**
 * A session using everything a session holds: a subscription, a queued, a sent and a received
 * delivery, an incoming QoS 2 identifier, a will due later, a disconnection time. Two clients
 * made with the same `part` share their messages (same message ids).
 */
function fullSession(clientId: string, part: number): PersistenceOp[] {
  const s = fullSessionState(clientId, part)
  const ops: PersistenceOp[] = [{ op: 'sessionCreate', clientId, expiryInterval: s.expiryInterval }]
  for (const subscription of s.subscriptions) ops.push({ op: 'subscribe', clientId, subscription })
  for (const d of s.deliveries) {
    ops.push({ op: 'message', messageId: d.messageId, message: d.message })
    ops.push({ op: 'enqueue', clientId, seq: d.seq, messageId: d.messageId, qos: d.qos, retain: d.retain })
    if (d.packetId !== undefined) ops.push({ op: 'sent', clientId, seq: d.seq, packetId: d.packetId })
    if (d.state === 'received') ops.push({ op: 'received', clientId, seq: d.seq })
  }
  for (const packetId of s.incomingQos2) ops.push({ op: 'qos2Received', clientId, packetId })
  ops.push({ op: 'will', clientId, will: s.will!.message, publishAt: s.will!.publishAt })
  ops.push({ op: 'sessionUpdate', clientId, expiryInterval: s.expiryInterval, disconnectedAt: s.disconnectedAt })
  return ops
}

/** What {@link fullSession} leaves. */
function fullSessionState(clientId: string, part: number): RestoredSession {
  const base = part * 10
  const m = (n: number): StoredMessage => message(`full/${part}/${n}`, `message ${part}.${n}`, { qos: 2 })
  return session(clientId, {
    expiryInterval: 300,
    disconnectedAt: T0 + part,
    subscriptions: [{ topicFilter: `full/${part}/#`, qos: 2, subscriptionIdentifier: part }],
    deliveries: [
      delivery(base + 1, base + 1, m(1)),
      delivery(base + 2, base + 2, m(2), { qos: 2, state: 'sent', packetId: base + 2 }),
      delivery(base + 3, base + 3, m(3), { qos: 2, state: 'received', packetId: base + 3 }),
    ],
    incomingQos2: [base + 4],
    will: { message: WILL, publishAt: T0 + 1000 + part },
  })
}

/** Two rich batches for the idempotency test: the first makes, the second changes and removes. */
function idempotencyBatches(): { first: PersistenceOp[]; second: PersistenceOp[] } {
  const m1 = message('idem/1', 'one', { qos: 2, properties: FULL_PROPERTIES })
  const m2 = message('idem/2', 'two')
  const r1 = message('idem/r1', 'retained one', { retain: true, receivedAt: T0 + 1 })
  const r2 = message('idem/r2', 'retained two', { retain: true, receivedAt: T0 + 2 })
  const first: PersistenceOp[] = [
    { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
    { op: 'subscribe', clientId: 'c', subscription: { topicFilter: 'idem/+', qos: 2, noLocal: true } },
    { op: 'message', messageId: 1, message: m1 },
    { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 2, retain: false, subscriptionIds: [9] },
    { op: 'enqueue', clientId: 'c', seq: 2, messageId: 1, qos: 1, retain: true },
    { op: 'sent', clientId: 'c', seq: 1, packetId: 1 },
    { op: 'qos2Received', clientId: 'c', packetId: 5 },
    { op: 'will', clientId: 'c', will: WILL },
    { op: 'retain', message: r1 },
    { op: 'sessionCreate', clientId: 'd', expiryInterval: 0 },
    { op: 'enqueue', clientId: 'd', seq: 1, messageId: 1, qos: 2, retain: false, shareGroup: '$share/g/idem/+' },
  ]
  const second: PersistenceOp[] = [
    { op: 'message', messageId: 2, message: m2 },
    { op: 'enqueue', clientId: 'c', seq: 3, messageId: 2, qos: 1, retain: false },
    { op: 'sent', clientId: 'c', seq: 2, packetId: 2 },
    { op: 'received', clientId: 'c', seq: 1 },
    { op: 'dequeue', clientId: 'c', seq: 2 },
    { op: 'subscribe', clientId: 'c', subscription: { topicFilter: '$share/g/idem/#', qos: 1 } },
    { op: 'unsubscribe', clientId: 'c', topicFilter: 'idem/+' },
    { op: 'qos2Released', clientId: 'c', packetId: 5 },
    { op: 'qos2Received', clientId: 'c', packetId: 6 },
    { op: 'will', clientId: 'c', will: WILL, publishAt: T0 + 60_000 },
    { op: 'sessionUpdate', clientId: 'c', expiryInterval: 120, disconnectedAt: T0 },
    { op: 'retain', message: r2 },
    { op: 'unretain', topic: 'idem/r1', receivedAt: T0 + 1 },
    { op: 'dequeue', clientId: 'd', seq: 1 },
  ]
  return { first, second }
}

/**
 * The failure tests' batches: what is there before, the batch that fails (touching sessions,
 * deliveries and retained messages, so a part of it would show), and the batch after it.
 */
const FAILURE = (() => {
  const m1 = message('f/1', 'before')
  const m2 = message('f/2', 'in the failed batch', { qos: 2 })
  const m3 = message('f/3', 'after')
  const r1 = message('f/r1', 'retained before', { retain: true })
  const r2 = message('f/r2', 'retained in the failed batch', { retain: true })
  const subscription: Subscription = { topicFilter: 'f/#', qos: 1 }
  const failedSubscription: Subscription = { topicFilter: 'f/failed/#', qos: 2 }
  const willDue = { message: WILL, publishAt: T0 + 5 }
  const before: PersistenceOp[] = [
    { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
    { op: 'subscribe', clientId: 'c', subscription },
    { op: 'message', messageId: 1, message: m1 },
    { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 1, retain: false },
    { op: 'retain', message: r1 },
  ]
  const failed: PersistenceOp[] = [
    { op: 'sessionCreate', clientId: 'd', expiryInterval: 30 },
    { op: 'subscribe', clientId: 'c', subscription: failedSubscription },
    { op: 'message', messageId: 2, message: m2 },
    { op: 'enqueue', clientId: 'c', seq: 2, messageId: 2, qos: 2, retain: false },
    { op: 'enqueue', clientId: 'd', seq: 1, messageId: 2, qos: 2, retain: false },
    { op: 'dequeue', clientId: 'c', seq: 1 },
    { op: 'retain', message: r2 },
    { op: 'unretain', topic: 'f/r1' },
    { op: 'will', clientId: 'c', will: willDue.message, publishAt: willDue.publishAt },
  ]
  const next: PersistenceOp[] = [
    { op: 'message', messageId: 3, message: m3 },
    { op: 'enqueue', clientId: 'd', seq: 2, messageId: 3, qos: 1, retain: false },
    { op: 'qos2Received', clientId: 'd', packetId: 1 },
  ]
  const expectedBefore: RestoredState = {
    sessions: [session('c', { expiryInterval: 60, subscriptions: [subscription], deliveries: [delivery(1, 1, m1)] })],
    retained: [r1],
  }
  const cWithFailed = session('c', { expiryInterval: 60, subscriptions: [subscription, failedSubscription], deliveries: [delivery(2, 2, m2, { qos: 2 })], will: willDue })
  const expectedWithFailed: RestoredState = {
    sessions: [cWithFailed, session('d', { expiryInterval: 30, deliveries: [delivery(1, 2, m2, { qos: 2 })] })],
    retained: [r2],
  }
  const expectedAfter: RestoredState = {
    sessions: [cWithFailed, session('d', { expiryInterval: 30, deliveries: [delivery(1, 2, m2, { qos: 2 }), delivery(2, 3, m3)], incomingQos2: [1] })],
    retained: [r2],
  }
  return { before, failed, next, expectedBefore, expectedWithFailed, expectedAfter }
})()
