import type { Journal } from '../persistence/journal.js'
import type { Subscription, WillMessage } from '../protocol/packets.js'
import type { RoutedMessage } from './routed-message.js'
import type { DeliveryLog, Session, SharedOrigin } from './session.js'

/**
 * Turns what happens to persistent sessions into persistence operations: their lifecycle,
 * subscriptions, incoming QoS 2 identifiers, wills, and the life of each delivery. Only
 * persistent sessions are recorded; the caller checks.
 */
export class SessionStore implements DeliveryLog {
  private lastMessageId = 0

  constructor(readonly journal: Journal) {}

  /** Continues message identifiers after the highest the store has used. */
  restoredMessageIds(last: number): void {
    if (last > this.lastMessageId) this.lastMessageId = last
  }

  created(session: Session): void {
    this.journal.record({ op: 'sessionCreate', clientId: session.clientId, expiryInterval: session.expiryInterval })
  }

  /** The session's expiry interval, and whether (since when) it is without a connection. */
  updated(session: Session, disconnectedAt?: number): void {
    const op: { op: 'sessionUpdate'; clientId: string; expiryInterval: number; disconnectedAt?: number } = { op: 'sessionUpdate', clientId: session.clientId, expiryInterval: session.expiryInterval }
    if (disconnectedAt !== undefined) op.disconnectedAt = disconnectedAt
    this.journal.record(op)
  }

  deleted(clientId: string): void {
    this.journal.record({ op: 'sessionDelete', clientId })
  }

  subscribed(session: Session, subscription: Subscription): void {
    this.journal.record({ op: 'subscribe', clientId: session.clientId, subscription })
  }

  unsubscribed(session: Session, topicFilter: string): void {
    this.journal.record({ op: 'unsubscribe', clientId: session.clientId, topicFilter })
  }

  qos2Received(session: Session, packetId: number): void {
    this.journal.record({ op: 'qos2Received', clientId: session.clientId, packetId })
  }

  qos2Released(session: Session, packetId: number): void {
    this.journal.record({ op: 'qos2Released', clientId: session.clientId, packetId })
  }

  /** The will: while connected (no `publishAt`), due at `publishAt`, or gone (null). */
  will(clientId: string, will: WillMessage | null, publishAt?: number): void {
    if (publishAt === undefined) this.journal.record({ op: 'will', clientId, will })
    else this.journal.record({ op: 'will', clientId, will, publishAt })
  }

  enqueued(session: Session, seq: number, message: RoutedMessage, qos: 1 | 2, retain: boolean, ids: number[] | undefined, group: SharedOrigin | undefined): void {
    const journal = this.journal
    // Stored once per batch, however many sessions it enters; stored again in a later batch (a
    // shared subscription handing it on) in case the store forgot it when its last delivery ended.
    if (message.storedIn !== journal.batch) {
      if (message.storeId === 0) message.storeId = ++this.lastMessageId
      message.storedIn = journal.batch
      // A durable adapter gets plain data (it serializes); the memory adapter keeps the object itself.
      journal.record({ op: 'message', messageId: message.storeId, message: journal.durable ? message.toStored() : message })
    }
    const op: { op: 'enqueue'; clientId: string; seq: number; messageId: number; qos: 1 | 2; retain: boolean; subscriptionIds?: number[]; shareGroup?: string } = {
      op: 'enqueue',
      clientId: session.clientId,
      seq,
      messageId: message.storeId,
      qos,
      retain,
    }
    if (ids !== undefined) op.subscriptionIds = ids
    if (group !== undefined) op.shareGroup = group.name
    journal.record(op)
  }

  sent(session: Session, seq: number, packetId: number): void {
    this.journal.record({ op: 'sent', clientId: session.clientId, seq, packetId })
  }

  received(session: Session, seq: number): void {
    this.journal.record({ op: 'received', clientId: session.clientId, seq })
  }

  removed(session: Session, seq: number): void {
    this.journal.record({ op: 'dequeue', clientId: session.clientId, seq })
  }

  whenCommitted(write: () => void): void {
    this.journal.whenCommitted(write)
  }
}
