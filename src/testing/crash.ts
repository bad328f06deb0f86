import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Awaitable, PersistenceAdapter, PersistenceOp, RestoredSession, RestoredState, StoredMessage } from '../persistence/adapter.js'

/**
 * The batches the crash child commits, and the state any prefix of them leaves.
 *
 * Batch `n` touches everything a batch can: it adds (a message, deliveries, a subscription, a
 * retained message, an incoming QoS 2 identifier) and changes or removes what earlier batches
 * added (marks the previous delivery received, dequeues one, releases an identifier, unretains
 * a topic, replaces the will, updates the session). So the store after a crash equals
 * `crashExpected(L)` for some L only if every batch up to L is wholly there and nothing of a later
 * one is: a batch applied in part shows.
 */

/** Where the crash child's timestamps start (ms since the epoch); any fixed value does. */
const BASE = 1_700_000_000_000
/** The two sessions the crash child writes to. */
export const CRASH_A = 'crash-a'
export const CRASH_B = 'crash-b'
/** Bytes in each crash message: enough that a commit is not a trivial write. */
const CRASH_PAYLOAD_BYTES = 1024

/** A packet identifier for batch `n`, within 1..65535. */
const packetId = (n: number): number => ((n - 1) % 65_535) + 1

function crashPayload(n: number): Buffer {
  const payload = Buffer.alloc(CRASH_PAYLOAD_BYTES)
  for (let i = 0; i < payload.length; i++) payload[i] = (n * 31 + i) & 0xff
  return payload
}

function crashMessage(n: number, retain: boolean): StoredMessage {
  return {
    topic: `crash/${n}`,
    payload: crashPayload(n),
    qos: 2,
    retain,
    properties: { userProperties: [['batch', String(n)]], correlationData: Buffer.from(`batch ${n}`) },
    receivedAt: BASE + n,
  }
}

/**
 * The crash child's batch `n` (from 1; batch 1 also creates the two sessions). Its first
 * operation changes what a restore shows (the `message` operation alone would not), so a store
 * that keeps the first operations of a batch killed early in its commit is caught too.
 */
export function crashBatch(n: number): PersistenceOp[] {
  const ops: PersistenceOp[] = []
  if (n === 1) {
    ops.push({ op: 'sessionCreate', clientId: CRASH_A, expiryInterval: 0 })
    ops.push({ op: 'sessionCreate', clientId: CRASH_B, expiryInterval: 3600 })
  } else {
    ops.push({ op: 'received', clientId: CRASH_A, seq: n - 1 })
    ops.push({ op: 'qos2Released', clientId: CRASH_B, packetId: packetId(n - 1) })
  }
  if (n > 2) ops.push({ op: 'unretain', topic: `crash/${n - 2}`, receivedAt: BASE + n - 2 })
  ops.push({ op: 'subscribe', clientId: CRASH_A, subscription: { topicFilter: `crash/${n}/#`, qos: 2, subscriptionIdentifier: n } })
  ops.push({ op: 'message', messageId: n, message: crashMessage(n, false) })
  ops.push({ op: 'enqueue', clientId: CRASH_A, seq: n, messageId: n, qos: 2, retain: false, subscriptionIds: [n] })
  ops.push({ op: 'sent', clientId: CRASH_A, seq: n, packetId: packetId(n) })
  ops.push({ op: 'enqueue', clientId: CRASH_B, seq: n, messageId: n, qos: 1, retain: false })
  if (n > 1) ops.push({ op: 'dequeue', clientId: CRASH_B, seq: n - 1 })
  ops.push({ op: 'qos2Received', clientId: CRASH_B, packetId: packetId(n) })
  ops.push({ op: 'retain', message: crashMessage(n, true) })
  ops.push({ op: 'will', clientId: CRASH_A, will: { topic: `will/${n}`, payload: Buffer.from(`gone after ${n}`), qos: 1, retain: false }, publishAt: BASE + n })
  // Last, so that a store holding a prefix of this batch still shows batch n - 1's expiry and the rest gives it away.
  ops.push({ op: 'sessionUpdate', clientId: CRASH_A, expiryInterval: n, disconnectedAt: BASE + n })
  return ops
}

/** What the store holds after batches 1..`last`, all of each and nothing more. */
export function crashExpected(last: number): RestoredState {
  if (last === 0) return { sessions: [], retained: [] }
  const a: RestoredSession = {
    clientId: CRASH_A,
    expiryInterval: last,
    disconnectedAt: BASE + last,
    subscriptions: [],
    deliveries: [],
    incomingQos2: [],
    will: { message: { topic: `will/${last}`, payload: Buffer.from(`gone after ${last}`), qos: 1, retain: false }, publishAt: BASE + last },
  }
  for (let n = 1; n <= last; n++) {
    a.subscriptions.push({ topicFilter: `crash/${n}/#`, qos: 2, subscriptionIdentifier: n })
    a.deliveries.push({
      seq: n,
      messageId: n,
      message: crashMessage(n, false),
      qos: 2,
      retain: false,
      subscriptionIds: [n],
      state: n < last ? 'received' : 'sent',
      packetId: packetId(n),
    })
  }
  const b: RestoredSession = {
    clientId: CRASH_B,
    expiryInterval: 3600,
    subscriptions: [],
    deliveries: [{ seq: last, messageId: last, message: crashMessage(last, false), qos: 1, retain: false, state: 'queued' }],
    incomingQos2: [packetId(last)],
  }
  const retained = [last - 1, last].filter((n) => n >= 1).map((n) => crashMessage(n, true))
  return { sessions: [a, b], retained }
}

/** Which batch the restored state claims to end with: crash-a's expiry interval is its batch number. */
export function crashLastBatch(state: RestoredState): number {
  return state.sessions.find((s) => s.clientId === CRASH_A)?.expiryInterval ?? 0
}

/** The child stops by itself after this many batches, should nobody kill it. */
const MAX_CRASH_BATCHES = 100_000
const COMMITTED = /^committed (\d+)$/

/**
 * The child's side of the conformance suite's kill -9 test: call it from the module named in
 * `crashChild.module`. It creates the adapter from the child's command-line arguments (those
 * `crashChild.store()` gave), opens it (the store must be empty), then commits numbered batches
 * one after the other, awaiting each, and prints `committed N` once batch N's commit resolved,
 * until the parent kills it.
 *
 * @param create makes the adapter; it receives the arguments after the module path
 *   (`process.argv.slice(2)`).
 *
 * @example
 * A fixture for a SQLite adapter, `test/fixtures/sqlite-crash-child.ts` (an ES module, for the
 * top-level await):
 * ```ts
 * import { runCrashChild } from 'culex-mqtt/testing'
 * import { SqlitePersistence } from 'culex-mqtt/sqlite'
 * await runCrashChild(([path]) => new SqlitePersistence({ path: path! }))
 * ```
 */
export async function runCrashChild(create: (args: string[]) => Awaitable<PersistenceAdapter>): Promise<void> {
  // The parent is gone (the pipe broke): stop rather than write into a store nobody checks.
  process.stdout.on('error', () => process.exit(2))
  const adapter = await create(process.argv.slice(2))
  const state = await adapter.open()
  if (state.sessions.length > 0 || state.retained.length > 0) {
    throw new Error(`runCrashChild: the store is not empty (${state.sessions.length} sessions, ${state.retained.length} retained messages); give each child a fresh one`)
  }
  for (let n = 1; n <= MAX_CRASH_BATCHES; n++) {
    await adapter.commit(crashBatch(n))
    process.stdout.write(`committed ${n}\n`)
  }
  await adapter.close()
}

/** What one killed child left: how many batches it printed as committed, and after how many the kill was sent. */
export interface CrashRun {
  printed: number
  target: number
}

/**
 * Runs the crash child and kills it (SIGKILL) once it has printed `target` batches as committed,
 * then waits for it to be gone. Lines that reach us after the kill count too: they were printed
 * after their commit resolved. No sleeps: the child's own output paces everything.
 */
export async function runAndKill(
  module: string | URL,
  args: readonly string[],
  execArgv: readonly string[],
  target: number,
  signal?: AbortSignal,
): Promise<CrashRun> {
  const modulePath = module instanceof URL || module.startsWith('file:') ? fileURLToPath(module) : module
  const child = spawn(process.execPath, [...execArgv, modulePath, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // The test timed out or was cancelled: the child must not outlive it.
    ...(signal !== undefined ? { signal, killSignal: 'SIGKILL' as const } : {}),
  })
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk: string) => {
    if (stderr.length < 64 * 1024) stderr += chunk
  })
  let printed = 0
  let killed = false
  let outOfOrder: string | undefined
  createInterface({ input: child.stdout }).on('line', (line) => {
    const match = COMMITTED.exec(line)
    if (match === null) return // the adapter's own output, if any
    const n = Number(match[1])
    if (n !== printed + 1 && outOfOrder === undefined) outOfOrder = `'committed ${n}' after 'committed ${printed}'`
    printed = Math.max(printed, n)
    if (!killed && printed >= target) {
      killed = true
      child.kill('SIGKILL')
    }
  })
  try {
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
      child.once('error', reject)
      // 'close' comes after stdout ended, so every line the child wrote has been read.
      child.once('close', (code, exitSignal) => resolve({ code, signal: exitSignal }))
    })
    if (!killed) {
      throw new Error(
        `the crash child exited (code ${exit.code}, signal ${exit.signal}) after printing ${printed} of the ${target} committed batches awaited` +
          (stderr === '' ? '' : `; its stderr:\n${stderr}`),
      )
    }
    if (outOfOrder !== undefined) throw new Error(`the crash child printed ${outOfOrder}`)
    return { printed, target }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
}
