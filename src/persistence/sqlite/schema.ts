import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import type { SqliteDurability } from '../sqlite.js'
import { connect, type Database } from './driver.js'

/** The layout this code reads and writes, kept in `PRAGMA user_version`. */
export const SCHEMA_VERSION = 1

/** 'CULX' in `PRAGMA application_id`: tells a Culex store from another application's SQLite file. */
const APPLICATION_ID = 0x43554c58

/**
 * Hot tables (deliveries, messages, incoming QoS 2 identifiers) are keyed by integers: a session
 * is its `sessions.id`, so the client identifier is stored once.
 *
 * - `deliveries` is clustered on (session, seq): a queue grows at the end of its session's range
 *   and drains from its start, so a batch dirties a few pages whatever the queue length.
 * - A message is stored once and deleted at the end of the batch that removed its last delivery;
 *   the index on `deliveries.message` makes that check a lookup, and grows at its end as message
 *   ids increase.
 * - Tables whose order the broker sees (sessions, subscriptions, incoming identifiers, retained)
 *   are rowid tables: an upsert keeps the row, so rowid order is the order of first insertion,
 *   as in the memory adapter.
 */
const DDL = `
CREATE TABLE meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  last_message_id INTEGER NOT NULL
);
INSERT INTO meta (id, last_message_id) VALUES (1, 0);

CREATE TABLE sessions (
  id INTEGER PRIMARY KEY,
  client_id TEXT NOT NULL UNIQUE,
  expiry_interval INTEGER NOT NULL,
  disconnected_at INTEGER,
  will_topic TEXT,
  will_payload BLOB,
  will_qos INTEGER,
  will_retain INTEGER,
  will_properties TEXT,
  will_publish_at INTEGER
);

CREATE TABLE subscriptions (
  session INTEGER NOT NULL,
  topic_filter TEXT NOT NULL,
  options TEXT NOT NULL,
  UNIQUE (session, topic_filter)
);

CREATE TABLE incoming_qos2 (
  session INTEGER NOT NULL,
  packet_id INTEGER NOT NULL,
  UNIQUE (session, packet_id)
);

CREATE TABLE messages (
  id INTEGER PRIMARY KEY,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  properties TEXT
);

CREATE TABLE deliveries (
  session INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  message INTEGER NOT NULL,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  state INTEGER NOT NULL, -- 0 queued, 1 sent, 2 received (see DELIVERY_STATES)
  packet_id INTEGER,
  subscription_ids TEXT,
  share_group TEXT,
  PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE INDEX deliveries_by_message ON deliveries (message);

CREATE TABLE retained (
  topic TEXT NOT NULL UNIQUE,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  properties TEXT
);
`

/** `deliveries.state` values, by their number. */
export const DELIVERY_STATES = ['queued', 'sent', 'received'] as const

/**
 * Opens `file` for this process alone, configured and with the current schema; closes it again
 * and throws a readable error if any of that fails.
 */
export function openDatabase(file: string, durability: SqliteDurability): Database {
  let db: Database | undefined
  try {
    // A store in a directory that does not exist yet (`--persistence sqlite:data/culex.db`) gets it.
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true })
    db = connect(file)
    configure(db, durability)
    prepareSchema(db, file)
    return db
  } catch (err) {
    db?.close()
    throw describeOpenError(err, file)
  }
}

function configure(db: Database, durability: SqliteDurability): void {
  // EXCLUSIVE before the first WAL access: the WAL index then lives in this process's heap (no
  // -shm file) and the first read takes an exclusive lock on the file, held until close. That
  // lock is what keeps a second broker (or any other SQLite connection) out.
  db.pragma('locking_mode = EXCLUSIVE')
  const mode = db.pragma('journal_mode = WAL', { simple: true })
  if (mode !== 'wal') throw new Error(`could not switch to WAL journal mode (got '${String(mode)}')`)
  // In WAL mode, NORMAL already survives a crash of the process (the WAL is written before the
  // commit returns, only fsync is deferred to checkpoints); FULL fsyncs every commit, for power loss.
  db.pragma(`synchronous = ${durability === 'power' ? 'FULL' : 'NORMAL'}`)
  // Checkpoints copy the log into the file and, under NORMAL, are where the fsyncs happen: every
  // 4000 pages (16 MiB of log) rather than SQLite's 1000 measured 10–35% fewer bytes written
  // (a hot page is copied once per checkpoint however often it changed) and steadier commits.
  db.pragma('wal_autocheckpoint = 4000')
}

function prepareSchema(db: Database, file: string): void {
  const version = db.pragma('user_version', { simple: true }) as number
  if (version === 0) {
    const tables = db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").pluck().get() as number
    if (tables > 0) throw new Error(`SqlitePersistence: ${file} is an SQLite database but not a Culex store (it has tables and no Culex schema version)`)
    db.transaction(() => {
      db.exec(DDL)
      db.pragma(`application_id = ${APPLICATION_ID}`)
      db.pragma(`user_version = ${SCHEMA_VERSION}`)
    }).immediate()
    return
  }
  if (db.pragma('application_id', { simple: true }) !== APPLICATION_ID) {
    throw new Error(`SqlitePersistence: ${file} is an SQLite database but not a Culex store (application_id differs)`)
  }
  if (version > SCHEMA_VERSION) {
    throw new Error(
      `SqlitePersistence: ${file} was written by a newer version of Culex (store schema version ${version}; this version reads up to ${SCHEMA_VERSION}). Upgrade culex-mqtt, or start from another file.`,
    )
  }
  // Version 1 is the first: once there is a 2, migrations from older versions go here.
}

/** The error open() throws: names the file and says what to do for the failures a user can act on. */
function describeOpenError(err: unknown, file: string): Error {
  const code = sqliteCode(err)
  const detail = err instanceof Error ? err.message : String(err)
  if (code?.startsWith('SQLITE_BUSY') || code?.startsWith('SQLITE_LOCKED')) {
    return new Error(
      `SqlitePersistence: the store ${file} is in use by another SqlitePersistence or SQLite connection (in this or another process); only one broker can open a store at a time. Close the other one first.`,
      { cause: err },
    )
  }
  if (code?.startsWith('SQLITE_READONLY') || code === 'SQLITE_CANTOPEN') {
    return new Error(`SqlitePersistence: cannot open ${file} for writing (${detail}); check that the file and its directory are writable.`, { cause: err })
  }
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new Error(`SqlitePersistence: ${file} is not a usable SQLite database (${detail}).`, { cause: err })
  }
  // Ours already (a missing driver, a schema from elsewhere): they name the file or the fix.
  if (err instanceof Error && detail.startsWith('SqlitePersistence')) return err
  return new Error(`SqlitePersistence: cannot open ${file}: ${detail}`, { cause: err })
}

/** The SQLite result code name (`SQLITE_BUSY`, `SQLITE_FULL`, …) of a better-sqlite3 error. */
export function sqliteCode(err: unknown): string | undefined {
  if (!(err instanceof Error)) return undefined
  const code = (err as { code?: unknown }).code
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined
}
