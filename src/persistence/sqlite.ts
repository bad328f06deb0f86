/**
 * `culex-mqtt/sqlite`: a durable persistence adapter on SQLite, through the optional peer
 * dependency `better-sqlite3` (`npm install better-sqlite3`).
 *
 * @module
 */
import { resolve } from 'node:path'
import type { PersistenceAdapter, PersistenceOp, RestoredState } from './adapter.js'
import { loadBetterSqlite3, type Database } from './sqlite/driver.js'
import { restore } from './sqlite/restore.js'
import { openDatabase, sqliteCode } from './sqlite/schema.js'
import { OpWriter } from './sqlite/writer.js'

/**
 * What a committed batch survives.
 *
 * - `'process'` (`PRAGMA synchronous=NORMAL`): a crash or `kill -9` of the process. The commit
 *   has written the write-ahead log when it returns; the operating system holds it until it
 *   reaches the disk, so an OS crash or power loss may lose the last commits (never corrupting
 *   the file). Commits cost no fsync.
 * - `'power'` (`PRAGMA synchronous=FULL`): also an OS crash or power loss: every commit waits
 *   for an fsync of the log, and the event loop with it (well under a millisecond on an SSD,
 *   several on a spinning disk), so fewer, larger batches pay off more.
 */
export type SqliteDurability = 'process' | 'power'

/** Options of {@link SqlitePersistence}. */
export interface SqlitePersistenceOptions {
  /**
   * The database file, created if missing (its directory must exist). While open, SQLite also
   * keeps a write-ahead log next to it (`<path>-wal`); copy or move the two together, or neither
   * while the broker runs.
   */
  path: string
  /** What a committed batch survives; default `'process'`. See {@link SqliteDurability}. */
  durability?: SqliteDurability
}

/**
 * Keeps persistent sessions (subscriptions, queued and in-flight deliveries, incoming QoS 2
 * identifiers, wills) and retained messages in an SQLite file, so they outlive the process.
 *
 * ```ts
 * import { SqlitePersistence } from 'culex-mqtt/sqlite'
 * const persistence = new SqlitePersistence({ path: './culex.db' })
 * ```
 *
 * - Each `commit` is one SQLite transaction, run synchronously: better-sqlite3 blocks the event
 *   loop for it, a few microseconds per operation (a few milliseconds for a batch of 1000 on a
 *   small 2-core machine). A failing one (disk full, read-only file) throws and leaves nothing
 *   of its batch applied.
 * - `open()` reads the whole store into memory, as the broker keeps its state there anyway.
 * - The file is locked for the adapter from `open()` to `close()`: a second adapter, in this or
 *   another process, fails to open it with an error naming it; so do other SQLite programs (the
 *   `sqlite3` shell) while the broker runs. A process that dies releases the lock.
 * - Messages are stored once, however many queues hold them, and deleted at the end of the batch
 *   that removed their last delivery.
 * - The schema version is kept in the file; a file written by a newer Culex is refused.
 *
 * Needs the `better-sqlite3` package (an optional peer dependency): constructing the adapter
 * without it throws an error saying to run `npm install better-sqlite3`.
 */
export class SqlitePersistence implements PersistenceAdapter {
  /** Commits survive the process (see {@link SqliteDurability}), so acknowledgements wait for them. */
  readonly durable = true
  /** The database file, as an absolute path. */
  readonly path: string
  /** What a committed batch survives. */
  readonly durability: SqliteDurability
  private db: Database | undefined
  private writer: OpWriter | undefined

  /** Checks the options and that better-sqlite3 can be loaded; opens nothing until `open()`. */
  constructor(options: SqlitePersistenceOptions) {
    const { path, durability = 'process' } = options
    if (typeof path !== 'string' || path === '' || path === ':memory:' || path.startsWith('file:')) {
      throw new TypeError(`SqlitePersistence: path must be the name of a database file, got ${JSON.stringify(path)} (for a store in memory, use MemoryPersistence)`)
    }
    if (durability !== 'process' && durability !== 'power') {
      throw new TypeError(`SqlitePersistence: durability must be 'process' or 'power', got ${JSON.stringify(durability)}`)
    }
    this.path = resolve(path)
    this.durability = durability
    loadBetterSqlite3()
  }

  /**
   * Opens the file (creating it and its schema if needed), takes its lock, and reads everything it
   * holds. Called again after `close()`, it opens the file again; called while open, it reads again.
   */
  open(): RestoredState {
    if (this.db === undefined) this.db = openDatabase(this.path, this.durability)
    try {
      const restored = restore(this.db)
      this.writer = new OpWriter(this.db, restored.sessionIds, restored.lastMessageId)
      return restored.state
    } catch (err) {
      this.close()
      throw new Error(`SqlitePersistence: cannot read ${this.path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
  }

  /**
   * Applies `ops` in one transaction, in order, before returning. Throws (with nothing of the
   * batch applied) if SQLite refuses it; the broker then commits the same operations again.
   */
  commit(ops: readonly PersistenceOp[]): void {
    if (this.writer === undefined) throw new Error(`SqlitePersistence: commit() before open() (${this.path})`)
    try {
      this.writer.commit(ops)
    } catch (err) {
      const code = sqliteCode(err)
      const detail = err instanceof Error ? err.message : String(err)
      throw new Error(`SqlitePersistence: commit to ${this.path} failed${code === undefined ? '' : ` (${code})`}, nothing of the batch was stored: ${detail}`, { cause: err })
    }
  }

  /** Closes the file (checkpointing its log into it) and releases its lock; `open()` may follow. */
  close(): void {
    const db = this.db
    this.db = undefined
    this.writer = undefined
    db?.close()
  }
}
