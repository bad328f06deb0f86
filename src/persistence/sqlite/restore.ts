import type { QoS, WillMessage } from '../../protocol/packets.js'
import type { RestoredDelivery, RestoredSession, RestoredState, StoredMessage } from '../adapter.js'
import { decodeProperties, decodeSubscription } from './codec.js'
import type { Database } from './driver.js'
import { DELIVERY_STATES } from './schema.js'

type SessionRow = [id: number, clientId: string, expiryInterval: number, disconnectedAt: number | null, ...will: WillRow]
type WillRow = [topic: string | null, payload: Buffer | null, qos: QoS | null, retain: number | null, properties: string | null, publishAt: number | null]
type RetainedRow = [topic: string, payload: Buffer, qos: QoS, retain: number, receivedAt: number, properties: string | null]
type MessageRow = [id: number, ...RetainedRow]
type DeliveryRow = [
  session: number,
  seq: number,
  message: number,
  qos: 1 | 2,
  retain: number,
  state: 0 | 1 | 2,
  packetId: number | null,
  subscriptionIds: string | null,
  shareGroup: string | null,
]

/** What `open()` hands the broker, plus the session ids the writer needs. */
export interface Restored {
  state: RestoredState
  /** Each session's `sessions.id`, by client identifier. */
  sessionIds: Map<string, number>
  /** As stored in `meta`: what `state.lastMessageId` says. */
  lastMessageId: number
}

/**
 * Reads the whole store. Rows come as arrays (`raw`), not objects, and each table is read in one
 * pass in key order, so the cost is one sequential scan per table.
 */
export function restore(db: Database): Restored {
  const rows = <T>(sql: string): IterableIterator<T> => db.prepare<[], T>(sql).raw().iterate()

  const byId = new Map<number, RestoredSession>()
  const sessionIds = new Map<string, number>()
  for (const [id, clientId, expiryInterval, disconnectedAt, ...will] of rows<SessionRow>(
    'SELECT id, client_id, expiry_interval, disconnected_at, will_topic, will_payload, will_qos, will_retain, will_properties, will_publish_at FROM sessions ORDER BY id',
  )) {
    const session: RestoredSession = { clientId, expiryInterval, subscriptions: [], deliveries: [], incomingQos2: [] }
    if (disconnectedAt !== null) session.disconnectedAt = disconnectedAt
    const restoredWill = restoreWill(will)
    if (restoredWill !== undefined) session.will = restoredWill
    byId.set(id, session)
    sessionIds.set(clientId, id)
  }

  for (const [session, topicFilter, options] of rows<[number, string, string]>('SELECT session, topic_filter, options FROM subscriptions ORDER BY rowid')) {
    byId.get(session)?.subscriptions.push(decodeSubscription(topicFilter, options))
  }
  for (const [session, packetId] of rows<[number, number]>('SELECT session, packet_id FROM incoming_qos2 ORDER BY rowid')) {
    byId.get(session)?.incomingQos2.push(packetId)
  }

  const messages = new Map<number, StoredMessage>()
  for (const [id, topic, payload, qos, retain, receivedAt, properties] of rows<MessageRow>('SELECT id, topic, payload, qos, retain, received_at, properties FROM messages')) {
    messages.set(id, restoreMessage(topic, payload, qos, retain, receivedAt, properties))
  }
  const referenced = new Set<number>()
  for (const [session, seq, messageId, qos, retain, state, packetId, subscriptionIds, shareGroup] of rows<DeliveryRow>(
    'SELECT session, seq, message, qos, retain, state, packet_id, subscription_ids, share_group FROM deliveries ORDER BY session, seq',
  )) {
    const message = messages.get(messageId)
    const owner = byId.get(session)
    if (message === undefined || owner === undefined) continue
    referenced.add(messageId)
    const delivery: RestoredDelivery = { seq, messageId, message, qos, retain: retain === 1, state: DELIVERY_STATES[state] }
    if (packetId !== null) delivery.packetId = packetId
    if (subscriptionIds !== null) delivery.subscriptionIds = JSON.parse(subscriptionIds) as number[]
    if (shareGroup !== null) delivery.shareGroup = shareGroup
    owner.deliveries.push(delivery)
  }
  if (referenced.size < messages.size) forgetUnreferenced(db, messages, referenced)

  const retained: StoredMessage[] = []
  for (const [topic, payload, qos, retain, receivedAt, properties] of rows<RetainedRow>('SELECT topic, payload, qos, retain, received_at, properties FROM retained ORDER BY rowid')) {
    retained.push(restoreMessage(topic, payload, qos, retain, receivedAt, properties))
  }

  const lastMessageId = db.prepare('SELECT last_message_id FROM meta').pluck().get() as number
  return { state: { sessions: [...byId.values()], retained, lastMessageId }, sessionIds, lastMessageId }
}

function restoreMessage(topic: string, payload: Buffer, qos: QoS, retain: number, receivedAt: number, properties: string | null): StoredMessage {
  const message: StoredMessage = { topic, payload, qos, retain: retain === 1, receivedAt }
  const decoded = decodeProperties(properties)
  if (decoded !== undefined) message.properties = decoded
  return message
}

function restoreWill([topic, payload, qos, retain, properties, publishAt]: WillRow): RestoredSession['will'] {
  if (topic === null || payload === null || qos === null) return undefined
  const message: WillMessage = { topic, payload, qos, retain: retain === 1 }
  const decoded = decodeProperties(properties)
  if (decoded !== undefined) message.properties = decoded
  return publishAt === null ? { message } : { message, publishAt }
}

/**
 * Deletes messages no delivery refers to: stored by a `message` operation whose `enqueue` never
 * came (or was ignored). Nothing can refer to them after a restart, and finding them here costs
 * nothing, since every message and delivery was just read anyway.
 */
function forgetUnreferenced(db: Database, messages: Map<number, StoredMessage>, referenced: Set<number>): void {
  const forget = db.prepare('DELETE FROM messages WHERE id = ?')
  db.transaction(() => {
    for (const id of messages.keys()) if (!referenced.has(id)) forget.run(id)
  }).immediate()
}
