import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { inspect } from 'node:util'
import type { RestoredSession, RestoredState, StoredMessage } from '../persistence/adapter.js'
import type { WillMessage } from '../protocol/packets.js'

/** Buffers up to this many bytes are shown in full in a diff; longer ones by length and digest, so a 256 KiB payload does not drown a failure message. */
const SHOWN_BYTES = 64

/** What {@link plainState} makes of a {@link RestoredState}: JSON-like data, to compare with `assert.deepStrictEqual`. */
export interface PlainState {
  sessions: unknown[]
  retained: unknown[]
}

/**
 * A restored state as plain data, for comparing what an adapter restored with what was committed,
 * whatever object shapes the adapter builds:
 * - sessions sorted by client identifier, retained messages by topic, subscriptions by topic filter
 *   and incoming QoS 2 identifiers by number (none of these orders means anything);
 * - deliveries, `userProperties` and `subscriptionIds` kept in their order (theirs does);
 * - Buffers as their bytes (a string naming them; long ones by length and SHA-256), so two
 *   Buffers compare equal when their bytes do; a Uint8Array that is not a Buffer stays apart,
 *   as the broker needs Buffers;
 * - fields set to `undefined` dropped, so an absent optional field and an undefined one are the
 *   same; object keys sorted;
 * - `lastMessageId` left out: it is a bound, not a value (see the conformance suite).
 *
 * @example
 * ```ts
 * assert.deepStrictEqual(plainState(await adapter.open()), plainState(expected))
 * ```
 */
export function plainState(state: RestoredState): PlainState {
  return {
    sessions: [...state.sessions].sort(by((s) => s.clientId)).map((s) => plain(plainSession(s))),
    retained: [...state.retained].sort(by((m) => m.topic)).map((m) => plain(m)),
  }
}

function plainSession(s: RestoredSession): unknown {
  return {
    ...s,
    subscriptions: [...s.subscriptions].sort(by((sub) => sub.topicFilter)),
    incomingQos2: [...s.incomingQos2].sort((a, b) => a - b),
  }
}

/** A comparator on a string key, by code units: the same everywhere, unlike localeCompare. */
function by<T>(key: (value: T) => string): (a: T, b: T) => number {
  return (a, b) => {
    const x = key(a)
    const y = key(b)
    return x < y ? -1 : x > y ? 1 : 0
  }
}

function plain(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return bytes('Buffer', value)
  if (value instanceof Uint8Array) return bytes(value.constructor.name, value)
  if (Array.isArray(value)) return value.map(plain)
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key]
      if (v !== undefined) out[key] = plain(v)
    }
    return out
  }
  return value
}

function bytes(kind: string, value: Uint8Array): string {
  const view = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  if (view.length <= SHOWN_BYTES) return `<${kind} ${view.toString('hex')}>`
  return `<${kind} ${view.length} bytes, sha256 ${createHash('sha256').update(view).digest('hex')}>`
}

/** Differences listed in a failure message; more are counted. */
const SHOWN_DIFFERENCES = 12

/**
 * Asserts that two restored states hold the same data, as {@link plainState} sees it. When they
 * do not, the message lists where, by path: sessions by client identifier, deliveries by seq,
 * subscriptions by topic filter, retained messages by topic (`sessions[c].deliveries[seq 3].state:
 * 'sent', expected 'received'`), which a diff of two large states would cut short.
 *
 * @param step says which state this is, in the message.
 */
export function assertSameState(actual: RestoredState, expected: RestoredState, step?: string): void {
  const a = plainState(actual)
  const e = plainState(expected)
  const found: string[] = []
  differences(a, e, '', found)
  if (found.length === 0) return
  const more = found.length > SHOWN_DIFFERENCES ? `\n  ... and ${found.length - SHOWN_DIFFERENCES} more` : ''
  throw new assert.AssertionError({
    message: `${step === undefined ? 'the restored state' : `the restored state (${step})`} differs from what was committed:\n  ${found.slice(0, SHOWN_DIFFERENCES).join('\n  ')}${more}`,
    actual: a,
    expected: e,
    operator: 'deepStrictEqual',
  })
}

function show(value: unknown): string {
  return value === undefined ? 'absent' : inspect(value, { depth: 1, breakLength: Infinity, maxArrayLength: 5, maxStringLength: 80 })
}

/** The key an element of a restored array is known by, if it has one. */
function label(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined
  const v = value as Record<string, unknown>
  if (typeof v.clientId === 'string') return JSON.stringify(v.clientId)
  if (typeof v.seq === 'number') return `seq ${v.seq}`
  if (typeof v.topicFilter === 'string') return `filter ${JSON.stringify(v.topicFilter)}`
  if (typeof v.topic === 'string') return `topic ${JSON.stringify(v.topic)}`
  return undefined
}

/** Lists where two plain values differ (everything `deepStrictEqual` would find), deepest first-found paths. */
function differences(actual: unknown, expected: unknown, path: string, found: string[]): void {
  if (Array.isArray(actual) && Array.isArray(expected)) {
    const la = actual.map(label)
    const le = expected.map(label)
    const labelled = (ls: Array<string | undefined>): ls is string[] => ls.every((l) => l !== undefined) && new Set(ls).size === ls.length
    if (labelled(la) && labelled(le)) {
      for (const l of le) if (!la.includes(l)) found.push(`${path}[${l}]: absent, expected ${show(expected[le.indexOf(l)])}`)
      for (const l of la) if (!le.includes(l)) found.push(`${path}[${l}]: ${show(actual[la.indexOf(l)])}, expected absent`)
      const common = la.filter((l) => le.includes(l))
      if (common.join('\0') !== le.filter((l) => la.includes(l)).join('\0')) found.push(`${path}: in the order ${common.join(', ')}, expected ${le.filter((l) => la.includes(l)).join(', ')}`)
      for (const l of common) differences(actual[la.indexOf(l)], expected[le.indexOf(l)], `${path}[${l}]`, found)
      return
    }
    if (actual.length !== expected.length) found.push(`${path}: ${actual.length} elements, expected ${expected.length}`)
    for (let i = 0; i < Math.min(actual.length, expected.length); i++) differences(actual[i], expected[i], `${path}[${i}]`, found)
    return
  }
  const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)
  if (isObject(actual) && isObject(expected)) {
    for (const key of new Set([...Object.keys(expected), ...Object.keys(actual)])) {
      differences(actual[key], expected[key], path === '' ? key : `${path}.${key}`, found)
    }
    return
  }
  if (!Object.is(actual, expected)) found.push(`${path}: ${show(actual)}, expected ${show(expected)}`)
}

const DELIVERY_STATES = new Set(['queued', 'sent', 'received'])

/**
 * Checks what `open()` returned against the shape `RestoredState` promises, beyond what a deep
 * comparison would show clearly: arrays where arrays are due, one session per client identifier
 * and one retained message per topic, deliveries in increasing `seq` order, a packet identifier
 * on every sent or received delivery, and real Buffers for payloads and correlation data (a
 * serializing adapter easily hands back a Uint8Array, a string or a `{ type: 'Buffer' }` object).
 */
export function assertRestoredShape(state: RestoredState, where = 'the restored state'): void {
  assert.ok(state !== null && typeof state === 'object', `${where}: open() returned an object`)
  assert.ok(Array.isArray(state.sessions), `${where}: sessions is an array`)
  assert.ok(Array.isArray(state.retained), `${where}: retained is an array`)
  const clientIds = new Set<string>()
  for (const s of state.sessions) {
    const at = `${where}: session ${JSON.stringify(s.clientId)}`
    assert.ok(!clientIds.has(s.clientId), `${at} is restored once`)
    clientIds.add(s.clientId)
    assert.ok(Array.isArray(s.subscriptions), `${at}: subscriptions is an array`)
    assert.ok(Array.isArray(s.deliveries), `${at}: deliveries is an array`)
    assert.ok(Array.isArray(s.incomingQos2), `${at}: incomingQos2 is an array`)
    let previous = -Infinity
    for (const d of s.deliveries) {
      assert.ok(d.seq > previous, `${at}: deliveries are in increasing seq order (seq ${d.seq} after ${previous})`)
      previous = d.seq
      assert.ok(DELIVERY_STATES.has(d.state), `${at}: delivery ${d.seq} has a known state (${String(d.state)})`)
      if (d.state !== 'queued') assert.equal(typeof d.packetId, 'number', `${at}: ${d.state} delivery ${d.seq} has its packetId`)
      assertMessageBuffers(d.message, `${at}, delivery ${d.seq}`)
    }
    if (s.will !== undefined) assertMessageBuffers(s.will.message, `${at}, will`)
  }
  const topics = new Set<string>()
  for (const m of state.retained) {
    assert.ok(!topics.has(m.topic), `${where}: one retained message for topic ${JSON.stringify(m.topic)}`)
    topics.add(m.topic)
    assertMessageBuffers(m, `${where}: retained ${JSON.stringify(m.topic)}`)
  }
}

function assertMessageBuffers(m: StoredMessage | WillMessage, where: string): void {
  assert.ok(Buffer.isBuffer(m.payload), `${where}: payload is a Buffer (got ${describe(m.payload)})`)
  const correlationData = m.properties?.correlationData
  if (correlationData !== undefined) {
    assert.ok(Buffer.isBuffer(correlationData), `${where}: properties.correlationData is a Buffer (got ${describe(correlationData)})`)
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (typeof value === 'object') return value.constructor?.name ?? 'an object'
  return typeof value
}
