/**
 * How the Redis adapter writes what it stores: compact values that Redis keeps opaque, except for
 * the few bytes the commit script must read (a delivery's state and message identifier, a
 * retained message's `receivedAt`), which come first so Lua can match them with one pattern.
 *
 * Internal: the layout is described in `../redis.ts`; nothing here is exported from the package.
 */
import type { Properties, Subscription, WillMessage } from '../../protocol/packets.js'
import type { DeliveryState, PersistenceOp, RestoredDelivery, StoredMessage } from '../adapter.js'
import type { JournalOp } from '../../cluster/ops.js'
import { ARITY, type OpCode } from './scripts.js'

/** The format version leading every message value, so a later layout can tell old values apart. */
const MESSAGE_FORMAT = '1'
const BAR = 0x7c // '|'

/** The JSON header of a message value: everything but the payload and `receivedAt`, which travel outside it. */
interface MessageHeader {
  /** topic */
  t: string
  /** qos */
  q: number
  /** retain, as 0 or 1 */
  r: number
  /** properties that are not Buffers, as given (userProperties keep their order: JSON arrays do) */
  p?: Record<string, unknown>
  /** Buffer properties (correlationData, authenticationData), base64 */
  b?: Record<string, string>
  /** a will's publishAt */
  w?: number
}

/**
 * A message as one binary value: `1|<receivedAt>|<header bytes>|<JSON header><payload>`. The
 * payload is appended raw (no base64), and `receivedAt` leads so the unretain script can compare
 * it without parsing JSON. A will has no `receivedAt` (empty) and carries `publishAt` in the header.
 */
export function encodeMessage(message: StoredMessage | WillMessage, receivedAt: number | undefined, publishAt?: number): Buffer {
  const header: MessageHeader = { t: message.topic, q: message.qos, r: message.retain ? 1 : 0 }
  if (message.properties !== undefined) {
    const plain: Record<string, unknown> = {}
    let buffers: Record<string, string> | undefined
    for (const [key, value] of Object.entries(message.properties)) {
      if (value === undefined) continue
      if (Buffer.isBuffer(value)) (buffers ??= {})[key] = value.toString('base64')
      else plain[key] = value
    }
    header.p = plain
    if (buffers !== undefined) header.b = buffers
  }
  if (publishAt !== undefined) header.w = publishAt
  const json = JSON.stringify(header)
  const jsonBytes = Buffer.byteLength(json)
  const lead = `${MESSAGE_FORMAT}|${receivedAt === undefined ? '' : String(receivedAt)}|${jsonBytes}|`
  const out = Buffer.allocUnsafe(lead.length + jsonBytes + message.payload.length)
  out.write(lead, 0, 'latin1')
  out.write(json, lead.length, 'utf8')
  message.payload.copy(out, lead.length + jsonBytes)
  return out
}

/** What a message value holds: the message, and `receivedAt` (stored messages) or `publishAt` (wills) when there. */
interface DecodedMessage {
  message: WillMessage
  receivedAt: number | undefined
  publishAt: number | undefined
}

/** Reads a value written by `encodeMessage`; throws on anything else (the caller says where it was). */
export function decodeMessage(value: Buffer): DecodedMessage {
  const a = value.indexOf(BAR)
  const b = a < 0 ? -1 : value.indexOf(BAR, a + 1)
  const c = b < 0 ? -1 : value.indexOf(BAR, b + 1)
  if (c < 0 || value.toString('latin1', 0, a) !== MESSAGE_FORMAT) throw new Error('not a message value of format 1')
  const received = value.toString('latin1', a + 1, b)
  const jsonBytes = Number(value.toString('latin1', b + 1, c))
  const jsonEnd = c + 1 + jsonBytes
  if (!Number.isSafeInteger(jsonBytes) || jsonEnd > value.length) throw new Error('message value truncated')
  const header = JSON.parse(value.toString('utf8', c + 1, jsonEnd)) as MessageHeader
  // A copy, not a view: a view would keep the whole reply buffer alive for as long as the broker keeps the message.
  const payload = Buffer.from(value.subarray(jsonEnd))
  const message: WillMessage = { topic: header.t, payload, qos: header.q as WillMessage['qos'], retain: header.r === 1 }
  if (header.p !== undefined) {
    const properties = { ...header.p } as Properties & Record<string, unknown>
    if (header.b !== undefined) for (const [key, b64] of Object.entries(header.b)) properties[key] = Buffer.from(b64, 'base64')
    message.properties = properties
  }
  return { message, receivedAt: received === '' ? undefined : Number(received), publishAt: header.w }
}

/** A stored message from its value; `receivedAt` must be there. */
export function decodeStoredMessage(value: Buffer): StoredMessage {
  const { message, receivedAt } = decodeMessage(value)
  if (receivedAt === undefined) throw new Error('message value without receivedAt')
  const stored: StoredMessage = { topic: message.topic, payload: message.payload, qos: message.qos, retain: message.retain, receivedAt }
  if (message.properties !== undefined) stored.properties = message.properties
  return stored
}

/**
 * A delivery as a short text value: `<state><packetId>|<messageId>|<qos><retain>|<subscription
 * ids>|<share group>`. State is `q`, `s` or `r` (queued, sent, received), followed by the packet
 * identifier once sent; the commit script rewrites only that lead. Subscription ids: `-` when
 * absent, else comma-separated (empty for an empty list). Share group: `-` when absent, else `=`
 * and the group, last so that it may contain any character.
 */
export function encodeDelivery(op: Extract<PersistenceOp, { op: 'enqueue' }>): string {
  const ids = op.subscriptionIds === undefined ? '-' : op.subscriptionIds.join(',')
  const share = op.shareGroup === undefined ? '-' : '=' + op.shareGroup
  return `q|${op.messageId}|${op.qos}${op.retain ? 1 : 0}|${ids}|${share}`
}

const STATES: Record<string, DeliveryState> = { q: 'queued', s: 'sent', r: 'received' }

/** The message id in a delivery value (NaN if the value is not one), to fetch the message before decoding the rest. */
export function deliveryMessageId(value: string): number {
  const a = value.indexOf('|')
  return Number(value.slice(a + 1, value.indexOf('|', a + 1)))
}

/** A delivery from its seq, its value and its message (fetched by `deliveryMessageId`). */
export function decodeDelivery(seq: number, value: string, message: StoredMessage): RestoredDelivery {
  const a = value.indexOf('|')
  const b = value.indexOf('|', a + 1)
  const c = value.indexOf('|', b + 1)
  const d = value.indexOf('|', c + 1)
  const state = STATES[value[0] ?? '']
  if (a < 0 || b < 0 || c < 0 || d < 0 || state === undefined || c - b !== 3) throw new Error('not a delivery value')
  const qos = Number(value[b + 1])
  if (qos !== 1 && qos !== 2) throw new Error('delivery with a bad QoS')
  const delivery: RestoredDelivery = { seq, messageId: Number(value.slice(a + 1, b)), message, qos, retain: value[b + 2] === '1', state }
  const ids = value.slice(c + 1, d)
  if (ids !== '-') delivery.subscriptionIds = ids === '' ? [] : ids.split(',').map(Number)
  const share = value.slice(d + 1)
  if (share !== '-') delivery.shareGroup = share.slice(1)
  if (a > 1) delivery.packetId = Number(value.slice(1, a))
  return delivery
}

/** A subscription's options as JSON (the topic filter is the hash field): rare writes, so plain and open to new fields. */
export function encodeSubscription(subscription: Subscription): string {
  const { topicFilter: _filter, ...rest } = subscription
  return JSON.stringify(rest)
}

/** A subscription from its hash field (the topic filter) and value. */
export function decodeSubscription(topicFilter: string, value: string): Subscription {
  return { ...(JSON.parse(value) as Omit<Subscription, 'topicFilter'>), topicFilter }
}

/** A session's fields: `<expiryInterval>|<disconnectedAt or empty>`. */
export function encodeSession(expiryInterval: number, disconnectedAt: number | undefined): string {
  return `${expiryInterval}|${disconnectedAt === undefined ? '' : disconnectedAt}`
}

/** A session's fields from its value. */
export function decodeSession(value: string): { expiryInterval: number; disconnectedAt: number | undefined } {
  const bar = value.indexOf('|')
  if (bar < 0) throw new Error('not a session value')
  const after = value.slice(bar + 1)
  return { expiryInterval: Number(value.slice(0, bar)), disconnectedAt: after === '' ? undefined : Number(after) }
}

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0

function fail(op: JournalOp, why: string): never {
  throw new TypeError(`RedisPersistence: ${why} in operation ${JSON.stringify(op.op)}; the batch was not sent`)
}

/** Marks an op code among the parts of a `BatchWriter` (fields have their byte length there). */
const CODE = -1

/**
 * Collects a batch as one binary value: per operation, its one-byte op code, then each field as a
 * 32-bit little-endian length and its bytes (what Lua's `struct.unpack('<I4c0...')` reads). One
 * argument instead of four or five per operation: the client library spends about a microsecond
 * encoding each argument and Redis some more parsing it, as much as the script's own work.
 */
class BatchWriter {
  private readonly parts: Array<string | Buffer> = []
  private readonly sizes: number[] = []
  private total = 0

  add(code: OpCode, ...fields: Array<string | Buffer>): void {
    // A slip here would make the script read the batch askew: caught at once, whatever the cost of one comparison.
    if (fields.length !== ARITY[code]) throw new Error(`RedisPersistence: op ${code} takes ${ARITY[code]} fields, not ${fields.length}`)
    this.parts.push(code)
    this.sizes.push(CODE)
    this.total += 1
    for (const field of fields) {
      const size = typeof field === 'string' ? Buffer.byteLength(field) : field.length
      this.parts.push(field)
      this.sizes.push(size)
      this.total += 4 + size
    }
  }

  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.total)
    let at = 0
    for (let i = 0; i < this.parts.length; i++) {
      const part = this.parts[i] as string | Buffer
      const size = this.sizes[i] as number
      if (size === CODE) {
        out[at++] = (part as string).charCodeAt(0)
        continue
      }
      out.writeUInt32LE(size, at)
      at += 4
      if (typeof part === 'string') out.write(part, at, 'utf8')
      else part.copy(out, at)
      at += size
    }
    return out
  }
}

/**
 * A batch as the commit script's one argument: one op code and its fixed number of fields per
 * operation (`ARITY` in `scripts.ts`). Checks what Redis would otherwise store wrongly,
 * so that a bad batch is refused before anything is sent.
 */
export function encodeBatch(ops: readonly JournalOp[], forwards?: ReadonlyMap<string, Buffer>): Buffer {
  const w = new BatchWriter()
  // Cluster mode: messages to other nodes' inboxes, one entry per node per batch.
  if (forwards !== undefined) for (const [node, blob] of forwards) w.add('F', node, blob)
  for (const op of ops) {
    if ('clientId' in op && typeof op.clientId !== 'string') fail(op, 'a clientId that is not a string')
    switch (op.op) {
      case 'sessionCreate':
        if (typeof op.expiryInterval !== 'number') fail(op, 'a bad expiryInterval')
        w.add('C', op.clientId, encodeSession(op.expiryInterval, undefined))
        break
      case 'sessionUpdate':
        if (typeof op.expiryInterval !== 'number') fail(op, 'a bad expiryInterval')
        if (op.disconnectedAt !== undefined && typeof op.disconnectedAt !== 'number') fail(op, 'a bad disconnectedAt')
        w.add('U', op.clientId, encodeSession(op.expiryInterval, op.disconnectedAt))
        break
      case 'sessionDelete':
        w.add('X', op.clientId)
        break
      case 'subscribe':
        if (typeof op.subscription.topicFilter !== 'string') fail(op, 'a topic filter that is not a string')
        w.add('S', op.clientId, op.subscription.topicFilter, encodeSubscription(op.subscription))
        break
      case 'unsubscribe':
        if (typeof op.topicFilter !== 'string') fail(op, 'a topic filter that is not a string')
        w.add('N', op.clientId, op.topicFilter)
        break
      case 'message':
        if (!isCount(op.messageId)) fail(op, 'a messageId that is not a non-negative safe integer')
        if (!Buffer.isBuffer(op.message.payload)) fail(op, 'a payload that is not a Buffer')
        w.add('M', String(op.messageId), encodeMessage(op.message, op.message.receivedAt))
        break
      case 'enqueue':
        if (!isCount(op.messageId) || !isCount(op.seq)) fail(op, 'a seq or messageId that is not a non-negative safe integer')
        if (op.qos !== 1 && op.qos !== 2) fail(op, 'a QoS other than 1 or 2')
        if (op.subscriptionIds !== undefined && !op.subscriptionIds.every(isCount)) fail(op, 'a bad subscription identifier')
        w.add('E', op.clientId, String(op.seq), String(op.messageId), encodeDelivery(op))
        break
      case 'sent':
        if (!isCount(op.seq) || !isCount(op.packetId)) fail(op, 'a bad seq or packetId')
        w.add('T', op.clientId, String(op.seq), String(op.packetId))
        break
      case 'received':
        if (!isCount(op.seq)) fail(op, 'a bad seq')
        w.add('R', op.clientId, String(op.seq))
        break
      case 'dequeue':
        if (!isCount(op.seq)) fail(op, 'a bad seq')
        w.add('D', op.clientId, String(op.seq))
        break
      case 'qos2Received':
        if (!isCount(op.packetId)) fail(op, 'a bad packetId')
        w.add('Q', op.clientId, String(op.packetId))
        break
      case 'qos2Released':
        if (!isCount(op.packetId)) fail(op, 'a bad packetId')
        w.add('L', op.clientId, String(op.packetId))
        break
      case 'will':
        if (op.will !== null && !Buffer.isBuffer(op.will.payload)) fail(op, 'a will payload that is not a Buffer')
        w.add('W', op.clientId, op.will === null ? '' : encodeMessage(op.will, undefined, op.publishAt))
        break
      case 'retain':
        if (typeof op.message.topic !== 'string' || !Buffer.isBuffer(op.message.payload)) fail(op, 'a bad topic or payload')
        w.add('K', op.message.topic, encodeMessage(op.message, op.message.receivedAt))
        break
      case 'unretain':
        if (typeof op.topic !== 'string') fail(op, 'a topic that is not a string')
        w.add('k', op.topic, op.receivedAt === undefined ? '' : String(op.receivedAt))
        break
      case 'forward':
        // Grouped per node into the forwards above (cluster mode).
        break
      case 'route':
        w.add('G', op.filter, op.present ? '1' : '0')
        break
      case 'inboxDone':
        w.add('I', op.id)
        break
      case 'drainedEntry':
        w.add('J', op.key, op.id)
        break
      case 'drained':
        w.add('Z', op.key)
        break
      default:
        fail(op, 'an unknown operation')
    }
  }
  return w.finish()
}
