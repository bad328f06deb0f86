import { log } from '../logging.js'
import type { Journal } from '../persistence/journal.js'
import type { Subscription, WillMessage } from '../protocol/packets.js'
import type { RoutedMessage } from './routed-message.js'
import type { DeliveryLog, Session, SharedOrigin } from './session.js'

/** A cluster node asks for the next block of message identifiers when this many are left in the current one. */
const BLOCK_REFILL_AT = 2 ** 22

/**
 * Turns what happens to persistent sessions into persistence operations: their lifecycle,
 * subscriptions, incoming QoS 2 identifiers, wills, and the life of each delivery. Only
 * persistent sessions are recorded; the caller checks.
 *
 * A store that is not durable (the memory adapter) loses everything with the process anyway, so
 * it is not told about each delivery as it happens (four operations per message, for nothing a
 * crash would keep): it gets every session's deliveries once, when the broker closes (`checkpoint`).
 */
export class SessionStore implements DeliveryLog {
  private lastMessageId = 0
  /** Client identifiers whose stored session was deleted in a batch not yet committed, with that batch. */
  private readonly deletions = new Map<string, number>()

  constructor(readonly journal: Journal) {}

  /** Continues message identifiers after the highest the store has used. */
  restoredMessageIds(last: number): void {
    if (last > this.lastMessageId) this.lastMessageId = last
  }

  /**
   * A cluster node numbers messages in blocks the cluster hands out, so no two nodes use one
   * identifier: this block is `[first, first + size)`. `more` is asked, once, for the next block
   * when half of this one is used; until it answers, this one goes on.
   */
  messageIdBlock(first: number, size: number, more: () => void): void {
    if (this.idLimit === Number.POSITIVE_INFINITY || this.lastMessageId + 1 >= this.idLimit) {
      // The first block, or the current one is used up: start on this one now.
      this.lastMessageId = first - 1
      this.idLimit = first + size
    } else {
      this.nextBlock = [first, size]
    }
    this.askedAt = Number.NEGATIVE_INFINITY
    this.more = more
  }

  private idLimit = Number.POSITIVE_INFINITY
  private nextBlock: [number, number] | undefined
  private more: (() => void) | undefined
  /** When the next block was last asked for (asked again after a second: a request can fail). */
  private askedAt = Number.NEGATIVE_INFINITY

  private nextMessageId(): number {
    const id = ++this.lastMessageId
    if (this.more === undefined) return id
    if (id >= this.idLimit) {
      const next = this.nextBlock
      if (next !== undefined) {
        this.nextBlock = undefined
        this.lastMessageId = next[0]
        this.idLimit = next[0] + next[1]
        this.askedAt = Number.NEGATIVE_INFINITY
        return next[0]
      }
      // The next block has not come: this one runs on into ids another node may hold.
      log.error('message identifiers: the next block from the cluster did not come in time')
    }
    if (this.nextBlock === undefined && this.idLimit - id <= BLOCK_REFILL_AT) {
      const now = Date.now()
      if (now - this.askedAt > 1000) {
        this.askedAt = now
        this.more()
      }
    }
    return id
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
    const journal = this.journal
    journal.record({ op: 'sessionDelete', clientId })
    const batch = journal.batch
    this.deletions.set(clientId, batch)
    journal.whenCommitted(() => {
      if (this.deletions.get(clientId) === batch) this.deletions.delete(clientId)
    })
  }

  /** Whether a deletion of this client's stored session still waits for its commit. */
  deletionPending(clientId: string): boolean {
    return this.deletions.has(clientId)
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
    if (!journal.durable) return
    // Stored once per batch, however many sessions it enters; stored again in a later batch (a
    // shared subscription handing it on) in case the store forgot it when its last delivery ended.
    if (message.storedIn !== journal.batch) {
      if (message.storeId === 0) message.storeId = this.nextMessageId()
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
    if (!this.journal.durable) return
    this.journal.record({ op: 'sent', clientId: session.clientId, seq, packetId })
  }

  received(session: Session, seq: number): void {
    if (!this.journal.durable) return
    this.journal.record({ op: 'received', clientId: session.clientId, seq })
  }

  removed(session: Session, seq: number): void {
    if (!this.journal.durable) return
    this.journal.record({ op: 'dequeue', clientId: session.clientId, seq })
  }

  /**
   * Writes a persistent session whole, replacing what the store has: for a store that is not
   * durable, once, when the broker closes.
   */
  checkpoint(session: Session): void {
    const journal = this.journal
    const clientId = session.clientId
    journal.record({ op: 'sessionCreate', clientId, expiryInterval: session.expiryInterval })
    for (const subscription of session.subscriptions.values()) journal.record({ op: 'subscribe', clientId, subscription })
    for (const packetId of session.incomingQos2) journal.record({ op: 'qos2Received', clientId, packetId })
    const pending = session.pendingWill
    if (pending !== undefined) this.will(clientId, pending.will, pending.publishAt)
    else if (session.will !== undefined) this.will(clientId, session.will)
    this.updated(session, session.disconnectedAt)
    for (const { entry, packetId, state } of session.deliveries()) {
      const message = entry.message
      if (message.storeId === 0) message.storeId = this.nextMessageId()
      journal.record({ op: 'message', messageId: message.storeId, message })
      const op: { op: 'enqueue'; clientId: string; seq: number; messageId: number; qos: 1 | 2; retain: boolean; subscriptionIds?: number[]; shareGroup?: string } = {
        op: 'enqueue',
        clientId,
        seq: entry.seq,
        messageId: message.storeId,
        qos: entry.qos as 1 | 2,
        retain: entry.retain,
      }
      if (entry.ids !== undefined) op.subscriptionIds = entry.ids
      if (entry.group !== undefined) op.shareGroup = entry.group.name
      journal.record(op)
      if (packetId !== undefined) journal.record({ op: 'sent', clientId, seq: entry.seq, packetId })
      if (state === 'received') journal.record({ op: 'received', clientId, seq: entry.seq })
    }
  }

  whenCommitted(write: () => void): void {
    this.journal.whenCommitted(write)
  }
}
