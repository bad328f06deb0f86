/**
 * SqlitePersistence: the persistence conformance suite (kill -9 test included), then what is
 * particular to SQLite: durability pragmas, equivalence with MemoryPersistence on random batches,
 * failures inside SQLite, messages stored once, constant bytes per message, the file lock, the
 * schema version and a missing better-sqlite3.
 *
 * Some tests reach the adapter's connection (`handle`) to break the store or count WAL frames:
 * the public interface has no way to make SQLite fail on purpose, and should not.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { after, describe, it } from 'node:test'
import Database from 'better-sqlite3'
import fc from 'fast-check'
import type { PersistenceAdapter, PersistenceOp, RestoredState, StoredMessage } from '../../src/persistence/adapter.js'
import { MemoryPersistence } from '../../src/persistence/memory.js'
import { SqlitePersistence, type SqliteDurability } from '../../src/persistence/sqlite.js'
import { loadBetterSqlite3 } from '../../src/persistence/sqlite/driver.js'
import { SCHEMA_VERSION } from '../../src/persistence/sqlite/schema.js'
import type { Properties, Subscription, WillMessage } from '../../src/protocol/packets.js'
import { persistenceConformance } from '../../src/testing/persistence-conformance.js'

const dir = mkdtempSync(join(tmpdir(), 'culex-sqlite-'))
after(() => rmSync(dir, { recursive: true, force: true }))
let files = 0
const newPath = (): string => join(dir, `store-${++files}.db`)
const removeStore = (path: string): void => {
  for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(path + suffix, { force: true })
}
const pathOf = (adapter: PersistenceAdapter): string => (adapter as SqlitePersistence).path

/** The adapter's open connection (a private field): only to break the store or look at its log. */
function handle(adapter: PersistenceAdapter): Database.Database {
  const db = (adapter as unknown as { db?: Database.Database }).db
  assert.ok(db !== undefined, 'the adapter is open')
  return db
}

/** A connection of our own, on a store no adapter holds. */
function inspect<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path)
  try {
    return fn(db)
  } finally {
    db.close()
  }
}

persistenceConformance('SqlitePersistence', {
  create: () => new SqlitePersistence({ path: newPath() }),
  reopen: (adapter) => new SqlitePersistence({ path: pathOf(adapter) }),
  // query_only makes SQLite refuse every write with SQLITE_READONLY, as a read-only file would
  // (chmod does not stop root, which these tests may run as).
  breakStore: (adapter) => {
    const db = handle(adapter)
    db.pragma('query_only = ON')
    return () => void db.pragma('query_only = OFF')
  },
  crashChild: {
    module: new URL('./fixtures/sqlite-crash-child.ts', import.meta.url),
    store: () => {
      const path = newPath()
      return { args: [path], adapter: () => new SqlitePersistence({ path }), dispose: () => removeStore(path) }
    },
  },
  cleanup: (adapter) => removeStore(pathOf(adapter)),
})

const T0 = 1_700_000_000_000
const message = (topic: string, fields: Partial<StoredMessage> = {}): StoredMessage => ({
  topic,
  payload: Buffer.from(`payload of ${topic}`),
  qos: 1,
  retain: false,
  receivedAt: T0,
  ...fields,
})
const enqueue = (clientId: string, seq: number, messageId: number): PersistenceOp => ({ op: 'enqueue', clientId, seq, messageId, qos: 1, retain: false })

/** Opens a fresh store, runs `fn` with it, then closes it (if still open) and removes the file. */
async function withAdapter(fn: (adapter: SqlitePersistence, path: string) => Promise<void> | void, durability?: SqliteDurability): Promise<void> {
  const path = newPath()
  const adapter = new SqlitePersistence(durability === undefined ? { path } : { path, durability })
  adapter.open()
  try {
    await fn(adapter, path)
  } finally {
    adapter.close()
    removeStore(path)
  }
}

/** Closes `adapter` and opens a new instance on its file, as a restarted broker would. */
function restart(adapter: SqlitePersistence): { adapter: SqlitePersistence; state: RestoredState } {
  adapter.close()
  const again = new SqlitePersistence({ path: adapter.path, durability: adapter.durability })
  return { adapter: again, state: again.open() }
}

describe('SqlitePersistence', () => {
  it("runs in WAL mode, synchronous=NORMAL by default ('process'), FULL with durability 'power', with the file locked exclusively", async () => {
    const expected: Array<[SqliteDurability | undefined, number]> = [
      [undefined, 1],
      ['process', 1],
      ['power', 2],
    ]
    for (const [durability, synchronous] of expected) {
      await withAdapter((adapter) => {
        const db = handle(adapter)
        assert.equal(adapter.durable, true)
        assert.equal(db.pragma('journal_mode', { simple: true }), 'wal', `${durability}: journal_mode`)
        assert.equal(db.pragma('synchronous', { simple: true }), synchronous, `${durability}: synchronous`)
        assert.equal(db.pragma('locking_mode', { simple: true }), 'exclusive', `${durability}: locking_mode`)
        assert.equal(adapter.durability, durability ?? 'process')
      }, durability)
    }
  })

  it('restores exactly what MemoryPersistence (the reference) restores, for random batches of every operation, each committed once or twice, before and after reopening', () => {
    const runs: Array<{ adapter?: SqlitePersistence; path: string }> = []
    try {
      fc.assert(
        fc.property(fc.array(fc.tuple(fc.array(opArbitrary, { maxLength: 16 }), fc.boolean()), { maxLength: 8 }), (batches) => {
          const run: { adapter?: SqlitePersistence; path: string } = { path: newPath() }
          runs.push(run)
          const memory = new MemoryPersistence()
          memory.open()
          run.adapter = new SqlitePersistence({ path: run.path })
          run.adapter.open()
          // Sessions and messages to start from, so that most deliveries find both.
          const setup: PersistenceOp[] = [
            { op: 'sessionCreate', clientId: 'a', expiryInterval: 1 },
            { op: 'sessionCreate', clientId: 'b', expiryInterval: 2 },
            ...[1, 2, 3, 4].map((id): PersistenceOp => ({ op: 'message', messageId: id, message: message(`t/${id}`) })),
          ]
          for (const [ops, twice] of [[setup, false] as const, ...batches]) {
            for (const target of [memory, run.adapter]) {
              target.commit(ops)
              if (twice) target.commit(ops)
            }
          }
          const expected = comparable(memory.open())
          assertSeqOrder(run.adapter.open())
          assert.deepStrictEqual(comparable(run.adapter.open()), expected, 'while open')
          const reopened = restart(run.adapter)
          run.adapter = reopened.adapter
          assert.deepStrictEqual(comparable(reopened.state), expected, 'reopened')
          run.adapter.close()
          removeStore(run.path)
        }),
        { numRuns: 200, seed: 0x5eed },
      )
    } finally {
      for (const run of runs) {
        run.adapter?.close()
        removeStore(run.path)
      }
    }
  })

  describe('a commit SQLite refuses throws, names the file, and leaves nothing of its batch applied', () => {
    /** 'c' exists with a subscription and a delivery; the failing batch replaces 'c', creates 'n', and retains. */
    const before: PersistenceOp[] = [
      { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
      { op: 'subscribe', clientId: 'c', subscription: { topicFilter: 'before', qos: 1 } },
      { op: 'message', messageId: 1, message: message('m/1') },
      enqueue('c', 1, 1),
    ]
    const changes: PersistenceOp[] = [
      { op: 'sessionCreate', clientId: 'n', expiryInterval: 5 },
      { op: 'sessionCreate', clientId: 'c', expiryInterval: 7 },
      { op: 'subscribe', clientId: 'c', subscription: { topicFilter: 'in-the-failed-batch', qos: 2 } },
      { op: 'retain', message: message('r', { retain: true }) },
    ]

    /** After the failure: nothing of it on reopen, and the same instance still maps 'c' and 'n' as before it. */
    function assertNothingApplied(adapter: SqlitePersistence): SqlitePersistence {
      // Ops naming 'c' must reach the old session, ops naming 'n' must be ignored: the failed
      // batch's session ids must have been forgotten with it.
      adapter.commit([
        { op: 'subscribe', clientId: 'c', subscription: { topicFilter: 'after', qos: 0 } },
        { op: 'subscribe', clientId: 'n', subscription: { topicFilter: 'after', qos: 0 } },
      ])
      const { adapter: again, state } = restart(adapter)
      assert.deepStrictEqual(state.retained, [])
      assert.deepStrictEqual(
        state.sessions.map((s) => [s.clientId, s.expiryInterval, s.subscriptions.map((sub) => sub.topicFilter), s.deliveries.map((d) => d.seq)]),
        [['c', 60, ['before', 'after'], [1]]],
      )
      return again
    }

    it('an operation failing inside SQLite mid-batch (a NOT NULL constraint): SQLITE_CONSTRAINT', async () => {
      await withAdapter((first) => {
        let adapter = first
        adapter.commit(before)
        const broken: PersistenceOp = { op: 'message', messageId: 2, message: message('x', { topic: null as unknown as string }) }
        assert.throws(
          () => adapter.commit([...changes, broken, enqueue('n', 1, 1)]),
          (err: Error) => err.message.includes(adapter.path) && /SQLITE_CONSTRAINT/.test(err.message) && /nothing of the batch/.test(err.message),
        )
        adapter = assertNothingApplied(adapter)
        adapter.close()
      })
    })

    it('the store out of space (SQLITE_FULL, the file capped with max_page_count); the same batch commits once there is room', async () => {
      await withAdapter((first) => {
        let adapter = first
        adapter.commit(before)
        const db = handle(adapter)
        const pages = db.pragma('page_count', { simple: true }) as number
        db.pragma(`max_page_count = ${pages}`)
        // 256 KiB cannot fit in the pages the file has.
        const big: PersistenceOp[] = [...changes, { op: 'message', messageId: 2, message: message('big', { payload: Buffer.alloc(256 * 1024, 1) }) }, enqueue('n', 1, 2)]
        assert.throws(() => adapter.commit(big), (err: Error) => err.message.includes(adapter.path) && /SQLITE_FULL/.test(err.message))
        assert.throws(() => adapter.commit(big), /SQLITE_FULL/, 'and again, while the store is full')
        adapter = assertNothingApplied(adapter)
        // Reopened: no cap any more.
        adapter.commit(big)
        const { adapter: again, state } = restart(adapter)
        assert.deepStrictEqual(
          state.sessions.map((s) => [s.clientId, s.expiryInterval, s.deliveries.map((d) => d.message.payload.length)]),
          [
            ['n', 5, [256 * 1024]],
            ['c', 7, []],
          ],
        )
        again.close()
      })
    })
  })

  it('stores a message once however many deliveries hold it, and deletes it at the end of the batch that removed its last delivery', async () => {
    const path = newPath()
    const count = (): number => inspect(path, (db) => db.prepare('SELECT count(*) FROM messages').pluck().get() as number)
    let adapter = new SqlitePersistence({ path })
    adapter.open()
    adapter.commit([
      ...['a', 'b', 'c'].map((clientId): PersistenceOp => ({ op: 'sessionCreate', clientId, expiryInterval: 60 })),
      { op: 'message', messageId: 1, message: message('fan/out', { payload: Buffer.alloc(10_000, 2) }) },
      enqueue('a', 1, 1),
      enqueue('b', 1, 1),
      enqueue('c', 1, 1),
    ])
    adapter.close()
    assert.equal(count(), 1, 'one row for three deliveries')
    adapter.open()
    adapter.commit([
      { op: 'dequeue', clientId: 'a', seq: 1 },
      { op: 'sessionCreate', clientId: 'b', expiryInterval: 60 },
    ])
    adapter.close()
    assert.equal(count(), 1, "still held by c's delivery")
    adapter = new SqlitePersistence({ path })
    adapter.open()
    // Its last delivery goes, then (same batch) a shared subscription hands it to another member.
    adapter.commit([
      { op: 'sessionDelete', clientId: 'c' },
      enqueue('b', 1, 1),
    ])
    const { adapter: again, state } = restart(adapter)
    assert.equal(state.sessions.find((s) => s.clientId === 'b')?.deliveries[0]?.message.payload.length, 10_000, 'handed over within the batch')
    again.commit([{ op: 'dequeue', clientId: 'b', seq: 1 }])
    again.close()
    assert.equal(count(), 0, 'gone at the end of the batch that removed its last delivery')
    removeStore(path)
  })

  it('open() forgets messages that no delivery refers to (a message operation whose enqueue never came)', () => {
    const path = newPath()
    const adapter = new SqlitePersistence({ path })
    adapter.open()
    adapter.commit([
      { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
      { op: 'message', messageId: 1, message: message('orphan') },
      { op: 'message', messageId: 2, message: message('held') },
      enqueue('c', 1, 2),
    ])
    adapter.close()
    const ids = (): number[] => inspect(path, (db) => db.prepare('SELECT id FROM messages ORDER BY id').pluck().all() as number[])
    assert.deepStrictEqual(ids(), [1, 2])
    const state = adapter.open()
    assert.equal(state.lastMessageId, 2, 'lastMessageId still counts the forgotten message')
    adapter.close()
    assert.deepStrictEqual(ids(), [2])
    removeStore(path)
  })

  it('writes the same number of WAL pages per message whether the queue holds 1,000 or 100,000 deliveries (no per-session rewrite)', async (t) => {
    await withAdapter((adapter) => {
      const db = handle(adapter)
      adapter.commit([{ op: 'sessionCreate', clientId: 'offline', expiryInterval: 3600 }])
      let id = 0
      const fill = (n: number): void => {
        for (let done = 0; done < n; ) {
          const ops: PersistenceOp[] = []
          for (let k = 0; k < 100 && done < n; k++, done++) {
            id++
            ops.push({ op: 'message', messageId: id, message: message(`sensors/${id % 100}`, { payload: Buffer.alloc(64, 7) }) }, enqueue('offline', id, id))
          }
          adapter.commit(ops)
        }
      }
      // WAL frames written by the next 1,000 messages (batches of 100), counted from an empty log.
      const framesPer1000 = (): number => {
        db.pragma('wal_checkpoint(TRUNCATE)')
        fill(1000)
        const [result] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>
        return result!.log
      }
      fill(1000)
      const shallow = framesPer1000()
      fill(98_000)
      const deep = framesPer1000()
      const pageSize = db.pragma('page_size', { simple: true }) as number
      t.diagnostic(`WAL bytes per message: ${((shallow * pageSize) / 1000).toFixed(0)} at depth 1,000, ${((deep * pageSize) / 1000).toFixed(0)} at depth 100,000`)
      // One more B-tree level may add a page per batch; a rewrite of the queue would add hundreds.
      assert.ok(deep <= shallow * 1.25 + 10, `frames per 1000 messages: ${shallow} at depth 1,000, ${deep} at depth 100,000`)
    })
  })

  describe('one adapter per file: the store is locked from open() to close()', () => {
    it('a second adapter in this process is refused, with an error naming the file, until the first closes', async () => {
      await withAdapter((first, path) => {
        first.commit([{ op: 'sessionCreate', clientId: 'c', expiryInterval: 60 }])
        const second = new SqlitePersistence({ path })
        assert.throws(
          () => second.open(),
          (err: Error) => err.message.includes(path) && /in use by another/.test(err.message),
        )
        assert.throws(() => second.commit([]), /before open/, 'the refused adapter is not open')
        first.close()
        assert.deepStrictEqual(
          second.open().sessions.map((s) => s.clientId),
          ['c'],
        )
        second.close()
      })
    })

    it('an adapter in another process is refused while this one holds the store, and this one while the other process does', async () => {
      const path = newPath()
      const mine = new SqlitePersistence({ path })
      mine.open()
      const refused = holder(path)
      const line = String((await refused.lines.next()).value)
      assert.match(line, /^refused /)
      assert.ok(line.includes(path), `names the file: ${line}`)
      assert.match(line, /in use by another/)
      assert.equal((await refused.exited).code, 3)
      mine.close()

      const holding = holder(path)
      try {
        assert.equal((await holding.lines.next()).value, 'opened')
        assert.throws(
          () => mine.open(),
          (err: Error) => err.message.includes(path) && /in use by another/.test(err.message),
        )
        holding.child.stdin.end()
        assert.equal((await holding.lines.next()).value, 'closed')
        assert.equal((await holding.exited).code, 0)
        // Released: this process opens it now.
        assert.deepStrictEqual(mine.open(), { sessions: [], retained: [], lastMessageId: 0 })
        mine.close()
      } finally {
        holding.child.kill('SIGKILL')
        mine.close()
        removeStore(path)
      }
    })
  })

  it('open() after close() on the same instance opens the file again and finds everything committed', () => {
    const path = newPath()
    const adapter = new SqlitePersistence({ path })
    adapter.open()
    adapter.commit([
      { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
      { op: 'message', messageId: 3, message: message('t') },
      enqueue('c', 1, 3),
    ])
    adapter.close()
    assert.throws(() => adapter.commit([]), /before open/, 'closed: commit refused')
    for (let round = 0; round < 2; round++) {
      const state = adapter.open()
      assert.equal(state.sessions[0]?.deliveries[0]?.message.topic, 't')
      assert.equal(state.lastMessageId, 3)
      adapter.commit([{ op: 'subscribe', clientId: 'c', subscription: { topicFilter: `round/${round}`, qos: 0 } }])
      adapter.close()
    }
    assert.deepStrictEqual(
      adapter.open().sessions[0]?.subscriptions.map((s) => s.topicFilter),
      ['round/0', 'round/1'],
    )
    adapter.close()
    removeStore(path)
  })

  it('creates the directories of its path that do not exist yet', () => {
    const nested = join(dir, `nested-${process.pid}`, 'deeper', 'culex.db')
    assert.equal(existsSync(dirname(nested)), false)
    const adapter = new SqlitePersistence({ path: nested })
    adapter.open()
    adapter.commit([{ op: 'sessionCreate', clientId: 'c', expiryInterval: 60 }])
    adapter.close()
    const again = new SqlitePersistence({ path: nested })
    assert.equal(again.open().sessions.length, 1)
    again.close()
  })

  it('lastMessageId is the highest messageId ever committed: a smaller one committed after a reopen does not lower it', () => {
    const path = newPath()
    let adapter = new SqlitePersistence({ path })
    adapter.open()
    adapter.commit([{ op: 'message', messageId: 10, message: message('ten') }])
    let state: RestoredState
    ;({ adapter, state } = restart(adapter))
    assert.equal(state.lastMessageId, 10)
    adapter.commit([{ op: 'message', messageId: 3, message: message('three') }])
    ;({ adapter, state } = restart(adapter))
    assert.equal(state.lastMessageId, 10)
    adapter.commit([{ op: 'message', messageId: 11, message: message('eleven') }])
    ;({ adapter, state } = restart(adapter))
    assert.equal(state.lastMessageId, 11)
    adapter.close()
    removeStore(path)
  })

  describe('refuses files it cannot trust, naming them', () => {
    it(`a store of a newer schema version than ${SCHEMA_VERSION}, and leaves it untouched`, () => {
      const path = newPath()
      const adapter = new SqlitePersistence({ path })
      adapter.open()
      adapter.close()
      inspect(path, (db) => db.pragma(`user_version = ${SCHEMA_VERSION + 1}`))
      assert.throws(
        () => adapter.open(),
        (err: Error) => err.message.includes(path) && err.message.includes(`schema version ${SCHEMA_VERSION + 1}`) && /newer version of Culex/.test(err.message),
      )
      assert.equal(inspect(path, (db) => db.pragma('user_version', { simple: true })), SCHEMA_VERSION + 1)
      removeStore(path)
    })

    it("another application's SQLite database, and a file that is not SQLite at all", () => {
      const other = newPath()
      inspect(other, (db) => db.exec('CREATE TABLE notes (text TEXT)'))
      assert.throws(
        () => new SqlitePersistence({ path: other }).open(),
        (err: Error) => err.message.includes(other) && /not a Culex store/.test(err.message),
      )
      const garbage = newPath()
      writeFileSync(garbage, Buffer.alloc(8192, 'not a database '))
      assert.throws(
        () => new SqlitePersistence({ path: garbage }).open(),
        (err: Error) => err.message.includes(garbage) && /not a usable SQLite database/.test(err.message),
      )
    })
  })

  describe('without better-sqlite3', () => {
    it('importing culex-mqtt/sqlite works; constructing SqlitePersistence says to run `npm install better-sqlite3`', async () => {
      const modulePath = fileURLToPath(new URL('../../src/persistence/sqlite.ts', import.meta.url))
      // CommonJS resolution of 'better-sqlite3' fails in this child, as where it is not installed.
      const script = `
        const Module = require('node:module')
        const resolve = Module._resolveFilename
        Module._resolveFilename = function (request, ...rest) {
          if (request === 'better-sqlite3') {
            const error = new Error("Cannot find module 'better-sqlite3'")
            error.code = 'MODULE_NOT_FOUND'
            throw error
          }
          return resolve.call(this, request, ...rest)
        }
        import(${JSON.stringify(modulePath)}).then((m) => {
          console.log('imported')
          try { new m.SqlitePersistence({ path: ${JSON.stringify(join(dir, 'never-created.db'))} }); console.log('constructed') }
          catch (err) { console.log('error: ' + err.message) }
        })`
      const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
      await once(child, 'close')
      const lines = out.trim().split('\n')
      assert.equal(lines[0], 'imported')
      assert.match(lines[1] ?? '', /^error: .*better-sqlite3.*run `npm install better-sqlite3`/)
      assert.equal(existsSync(join(dir, 'never-created.db')), false)
    })

    it('the loader gives the same advice when better-sqlite3 cannot be resolved from where it looks, and keeps the cause', () => {
      const nowhere = mkdtempSync(join(dir, 'no-node-modules-'))
      assert.throws(
        () => loadBetterSqlite3(createRequire(join(nowhere, 'x.js'))),
        (err: Error) => /npm install better-sqlite3/.test(err.message) && (err.cause as { code?: string }).code === 'MODULE_NOT_FOUND',
      )
    })
  })

  it('refuses a path that is not a file name and an unknown durability; commit before open() throws', () => {
    for (const path of ['', ':memory:', 'file:x.db?mode=memory']) {
      assert.throws(() => new SqlitePersistence({ path }), TypeError, JSON.stringify(path))
    }
    assert.throws(() => new SqlitePersistence({ path: newPath(), durability: 'disk' as SqliteDurability }), /durability must be 'process' or 'power'/)
    assert.throws(() => new SqlitePersistence({ path: newPath() }).commit([]), /commit\(\) before open\(\)/)
  })
})

/** The lock-holding fixture in a child process, with its output lines. */
function holder(path: string): { child: ChildProcessWithoutNullStreams; lines: AsyncIterator<string>; exited: Promise<{ code: number | null }> } {
  const fixture = fileURLToPath(new URL('./fixtures/sqlite-hold.ts', import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, path], { stdio: ['pipe', 'pipe', 'pipe'] })
  child.stderr.pipe(process.stderr)
  const exited = once(child, 'close').then(([code]) => ({ code: code as number | null }))
  return { child, lines: createInterface({ input: child.stdout })[Symbol.asyncIterator](), exited }
}

/** Deliveries in strictly increasing seq order, as the adapter promises. */
function assertSeqOrder(state: RestoredState): void {
  for (const s of state.sessions) {
    s.deliveries.forEach((d, i) => assert.ok(i === 0 || d.seq > s.deliveries[i - 1]!.seq, `${s.clientId}: deliveries in seq order`))
  }
}

/**
 * A state to compare with MemoryPersistence's, in every order the broker may see (sessions,
 * subscriptions, incoming identifiers, retained messages), except deliveries: the memory adapter
 * keeps them in enqueue order, SQLite in seq order (the documented one). Objects become plain
 * ones: fast-check makes some with a null prototype, which the memory adapter hands back as is.
 */
function comparable(state: RestoredState): unknown {
  return plainObjects({ ...state, sessions: state.sessions.map((s) => ({ ...s, deliveries: [...s.deliveries].sort((a, b) => a.seq - b.seq) })) })
}

function plainObjects(value: unknown): unknown {
  if (Buffer.isBuffer(value) || value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) return value.map(plainObjects)
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plainObjects(v)]))
}

// --- Random operations over small domains, so that they collide (same client, seq, topic, id) ---

const clientId = fc.constantFrom('a', 'b')
const seq = fc.integer({ min: 1, max: 4 })
const messageId = fc.integer({ min: 1, max: 4 })
const packetId = fc.integer({ min: 1, max: 4 })
const topic = fc.constantFrom('t/1', 't/2', 't/3')
const time = fc.integer({ min: 0, max: 3 }).map((n) => T0 + n)
const qos = fc.constantFrom(0 as const, 1 as const, 2 as const)
const bytes = fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a))
const properties: fc.Arbitrary<Properties> = fc.record(
  {
    correlationData: bytes,
    userProperties: fc.array(fc.tuple(fc.string({ maxLength: 3 }), fc.string({ maxLength: 3 })), { maxLength: 3 }),
    contentType: fc.string({ maxLength: 5 }),
    messageExpiryInterval: fc.nat(100),
    subscriptionIdentifier: fc.array(fc.integer({ min: 1, max: 9 }), { maxLength: 2 }),
  },
  { requiredKeys: [] },
)
const storedMessage: fc.Arbitrary<StoredMessage> = fc.record(
  { topic, payload: bytes, qos, retain: fc.boolean(), receivedAt: time, properties },
  { requiredKeys: ['topic', 'payload', 'qos', 'retain', 'receivedAt'] },
)
const subscription: fc.Arbitrary<Subscription> = fc.record(
  {
    topicFilter: fc.constantFrom('x', 'y/#', '$share/g/x'),
    qos,
    noLocal: fc.boolean(),
    retainAsPublished: fc.boolean(),
    retainHandling: fc.constantFrom(0 as const, 1 as const, 2 as const),
    subscriptionIdentifier: fc.integer({ min: 1, max: 9 }),
  },
  { requiredKeys: ['topicFilter', 'qos'] },
)
const will: fc.Arbitrary<WillMessage> = fc.record({ topic, payload: bytes, qos, retain: fc.boolean(), properties }, { requiredKeys: ['topic', 'payload', 'qos', 'retain'] })

const opArbitrary: fc.Arbitrary<PersistenceOp> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ op: fc.constant('sessionCreate' as const), clientId, expiryInterval: fc.nat(10) }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('sessionUpdate' as const), clientId, expiryInterval: fc.nat(10), disconnectedAt: time }, { requiredKeys: ['op', 'clientId', 'expiryInterval'] }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('sessionDelete' as const), clientId }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('subscribe' as const), clientId, subscription }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('unsubscribe' as const), clientId, topicFilter: fc.constantFrom('x', 'y/#', '$share/g/x') }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('message' as const), messageId, message: storedMessage }) },
  {
    weight: 5,
    arbitrary: fc.record(
      {
        op: fc.constant('enqueue' as const),
        clientId,
        seq,
        messageId,
        qos: fc.constantFrom(1 as const, 2 as const),
        retain: fc.boolean(),
        subscriptionIds: fc.array(fc.integer({ min: 1, max: 9 }), { maxLength: 3 }),
        shareGroup: fc.constant('$share/g/x'),
      },
      { requiredKeys: ['op', 'clientId', 'seq', 'messageId', 'qos', 'retain'] },
    ),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('sent' as const), clientId, seq, packetId }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('received' as const), clientId, seq }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('dequeue' as const), clientId, seq }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('qos2Received' as const), clientId, packetId }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('qos2Released' as const), clientId, packetId }) },
  {
    weight: 1,
    arbitrary: fc.record({ op: fc.constant('will' as const), clientId, will: fc.option(will, { nil: null }), publishAt: time }, { requiredKeys: ['op', 'clientId', 'will'] }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('retain' as const), message: storedMessage }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('unretain' as const), topic, receivedAt: time }, { requiredKeys: ['op', 'topic'] }) },
)
