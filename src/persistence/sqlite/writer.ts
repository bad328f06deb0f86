import type { WillMessage } from '../../protocol/packets.js'
import type { PersistenceOp, StoredMessage } from '../adapter.js'
import { encodeProperties, encodeSubscriptionOptions } from './codec.js'
import type { Database, Statement } from './driver.js'

/** The statements `commit` runs, prepared once per connection. */
function prepareStatements(db: Database) {
  // Repeated inserts are no-ops through ON CONFLICT on the key, never INSERT OR IGNORE, which
  // would also swallow a NOT NULL violation, i.e. a bug, and store nothing without a word.
  const p = (sql: string): Statement => db.prepare(sql)
  return {
    insertSession: p('INSERT INTO sessions (client_id, expiry_interval) VALUES (?, ?)'),
    updateSession: p('UPDATE sessions SET expiry_interval = ?, disconnected_at = ? WHERE id = ?'),
    setWill: p('UPDATE sessions SET will_topic = ?, will_payload = ?, will_qos = ?, will_retain = ?, will_properties = ?, will_publish_at = ? WHERE id = ?'),
    deleteSession: p('DELETE FROM sessions WHERE id = ?'),
    // RETURNING: the messages that may have lost their last delivery (see OpWriter.released).
    deleteSessionDeliveries: p('DELETE FROM deliveries WHERE session = ? RETURNING message').pluck(),
    deleteSessionSubscriptions: p('DELETE FROM subscriptions WHERE session = ?'),
    deleteSessionQos2: p('DELETE FROM incoming_qos2 WHERE session = ?'),
    subscribe: p('INSERT INTO subscriptions (session, topic_filter, options) VALUES (?, ?, ?) ON CONFLICT (session, topic_filter) DO UPDATE SET options = excluded.options'),
    unsubscribe: p('DELETE FROM subscriptions WHERE session = ? AND topic_filter = ?'),
    message: p('INSERT INTO messages (id, topic, payload, qos, retain, received_at, properties) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING'),
    // Selecting from messages makes the insert a no-op when the message is unknown, as in memory.
    enqueue: p(
      'INSERT INTO deliveries (session, seq, message, qos, retain, state, subscription_ids, share_group) SELECT ?, ?, id, ?, ?, 0, ?, ? FROM messages WHERE id = ? ON CONFLICT (session, seq) DO NOTHING',
    ),
    sent: p('UPDATE deliveries SET packet_id = ?, state = max(state, 1) WHERE session = ? AND seq = ?'),
    received: p('UPDATE deliveries SET state = 2 WHERE session = ? AND seq = ? AND packet_id IS NOT NULL'),
    dequeue: p('DELETE FROM deliveries WHERE session = ? AND seq = ? RETURNING message').pluck(),
    forgetMessage: p('DELETE FROM messages WHERE id = ? AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message = ?)'),
    qos2Received: p('INSERT INTO incoming_qos2 (session, packet_id) VALUES (?, ?) ON CONFLICT (session, packet_id) DO NOTHING'),
    qos2Released: p('DELETE FROM incoming_qos2 WHERE session = ? AND packet_id = ?'),
    retain: p(
      'INSERT INTO retained (topic, payload, qos, retain, received_at, properties) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos, retain = excluded.retain, received_at = excluded.received_at, properties = excluded.properties',
    ),
    unretain: p('DELETE FROM retained WHERE topic = ?'),
    unretainIf: p('DELETE FROM retained WHERE topic = ? AND received_at = ?'),
    setLastMessageId: p('UPDATE meta SET last_message_id = ? WHERE id = 1'),
  }
}

/**
 * Applies batches of operations to one connection, each batch in one transaction. It keeps the
 * client identifier → session id map in memory so a hot operation costs one statement; a failed
 * batch puts the map back as it was, since the transaction it mirrors was rolled back.
 */
export class OpWriter {
  private readonly s: ReturnType<typeof prepareStatements>
  private readonly apply: (ops: readonly PersistenceOp[]) => void
  /** Session ids as of the last committed batch plus the current one. */
  private readonly sessionIds: Map<string, number>
  /** For the batch being applied: each changed client's id before it (undefined: it had none). */
  private readonly undo = new Map<string, number | undefined>()
  /**
   * For the batch being applied: messages whose deliveries it removed. Those left without one are
   * deleted only once the batch is applied, as a later operation of it may still enqueue them
   * (a shared subscription handing a message from one member to another).
   */
  private readonly released = new Set<number>()
  private lastMessageId: number
  private storedLastMessageId: number

  constructor(db: Database, sessionIds: Map<string, number>, lastMessageId: number) {
    this.s = prepareStatements(db)
    this.sessionIds = sessionIds
    this.lastMessageId = this.storedLastMessageId = lastMessageId
    // IMMEDIATE: every batch writes, so it starts as a write transaction.
    this.apply = db.transaction((ops: readonly PersistenceOp[]) => {
      for (const op of ops) this.applyOne(op)
      for (const id of this.released) this.s.forgetMessage.run(id, id)
      if (this.lastMessageId !== this.storedLastMessageId) this.s.setLastMessageId.run(this.lastMessageId)
    }).immediate
  }

  /** Applies `ops` in one transaction: all of them, or (throwing) none. */
  commit(ops: readonly PersistenceOp[]): void {
    if (ops.length === 0) return
    this.undo.clear()
    this.released.clear()
    try {
      this.apply(ops)
      this.storedLastMessageId = this.lastMessageId
    } catch (err) {
      for (const [clientId, id] of this.undo) {
        if (id === undefined) this.sessionIds.delete(clientId)
        else this.sessionIds.set(clientId, id)
      }
      this.lastMessageId = this.storedLastMessageId
      throw err
    }
  }

  private applyOne(op: PersistenceOp): void {
    const s = this.s
    switch (op.op) {
      case 'sessionCreate': {
        this.deleteSession(op.clientId)
        const id = Number(s.insertSession.run(op.clientId, op.expiryInterval).lastInsertRowid)
        this.setSessionId(op.clientId, id)
        return
      }
      case 'sessionUpdate': {
        const id = this.sessionIds.get(op.clientId)
        if (id !== undefined) s.updateSession.run(op.expiryInterval, op.disconnectedAt ?? null, id)
        return
      }
      case 'sessionDelete':
        this.deleteSession(op.clientId)
        return
      case 'subscribe': {
        const id = this.sessionIds.get(op.clientId)
        if (id !== undefined) s.subscribe.run(id, op.subscription.topicFilter, encodeSubscriptionOptions(op.subscription))
        return
      }
      case 'unsubscribe': {
        const id = this.sessionIds.get(op.clientId)
        if (id !== undefined) s.unsubscribe.run(id, op.topicFilter)
        return
      }
      case 'message': {
        const m = op.message
        s.message.run(op.messageId, m.topic, m.payload, m.qos, m.retain ? 1 : 0, m.receivedAt, encodeProperties(m.properties))
        if (op.messageId > this.lastMessageId) this.lastMessageId = op.messageId
        return
      }
      case 'enqueue': {
        const id = this.sessionIds.get(op.clientId)
        if (id === undefined) return
        const subscriptionIds = op.subscriptionIds === undefined ? null : JSON.stringify(op.subscriptionIds)
        s.enqueue.run(id, op.seq, op.qos, op.retain ? 1 : 0, subscriptionIds, op.shareGroup ?? null, op.messageId)
        return
      }
      case 'sent': {
        const id = this.sessionIds.get(op.clientId)
        if (id !== undefined) s.sent.run(op.packetId, id, op.seq)
        return
      }
      case 'received': {
        const id = this.sessionIds.get(op.clientId)
        if (id !== undefined) s.received.run(id, op.seq)
        return
      }
      case 'dequeue': {
        const id = this.sessionIds.get(op.clientId)
        if (id === undefined) return
        const messageId = s.dequeue.get(id, op.seq) as number | undefined
        if (messageId !== undefined) this.released.add(messageId)
        return
      }
      case 'qos2Received': {
        const id = this.sessionIds.get(op.clientId)
        if (id !== undefined) s.qos2Received.run(id, op.packetId)
        return
      }
      case 'qos2Released': {
        const id = this.sessionIds.get(op.clientId)
        if (id !== undefined) s.qos2Released.run(id, op.packetId)
        return
      }
      case 'will': {
        const id = this.sessionIds.get(op.clientId)
        if (id !== undefined) s.setWill.run(...willColumns(op.will, op.publishAt), id)
        return
      }
      case 'retain': {
        const m = op.message
        s.retain.run(m.topic, ...messageColumns(m))
        return
      }
      case 'unretain':
        if (op.receivedAt === undefined) s.unretain.run(op.topic)
        else s.unretainIf.run(op.topic, op.receivedAt)
        return
    }
  }

  private deleteSession(clientId: string): void {
    const id = this.sessionIds.get(clientId)
    if (id === undefined) return
    const s = this.s
    for (const messageId of s.deleteSessionDeliveries.all(id) as number[]) this.released.add(messageId)
    s.deleteSessionSubscriptions.run(id)
    s.deleteSessionQos2.run(id)
    s.deleteSession.run(id)
    this.setSessionId(clientId, undefined)
  }

  private setSessionId(clientId: string, id: number | undefined): void {
    if (!this.undo.has(clientId)) this.undo.set(clientId, this.sessionIds.get(clientId))
    if (id === undefined) this.sessionIds.delete(clientId)
    else this.sessionIds.set(clientId, id)
  }
}

/** The columns after `topic` of a stored message: payload, qos, retain, received_at, properties. */
function messageColumns(m: StoredMessage): [Buffer, number, number, number, string | null] {
  return [m.payload, m.qos, m.retain ? 1 : 0, m.receivedAt, encodeProperties(m.properties)]
}

/** The will_* columns of `sessions`, all null when there is no will. */
function willColumns(will: WillMessage | null, publishAt: number | undefined): unknown[] {
  if (will === null) return [null, null, null, null, null, null]
  return [will.topic, will.payload, will.qos, will.retain ? 1 : 0, encodeProperties(will.properties), publishAt ?? null]
}
