import type { Subscription, WillMessage } from '../protocol/packets.js'
import type { PersistenceAdapter, PersistenceOp, RestoredDelivery, RestoredSession, RestoredState, StoredMessage } from './adapter.js'

interface StoredSession {
  expiryInterval: number
  disconnectedAt: number | undefined
  subscriptions: Map<string, Subscription>
  /** By seq; a Map keeps insertion order, which is seq order. */
  deliveries: Map<number, RestoredDelivery>
  incomingQos2: Set<number>
  will: { message: WillMessage; publishAt?: number } | undefined
}

/**
 * The default adapter: everything in this process's memory, gone when it exits. It is not
 * durable, so nothing waits for it; it exists so that a broker started again in the same process
 * on the same adapter (after `close()`) finds the sessions and retained messages of the last one.
 *
 * It keeps references to the broker's own message objects, never copies.
 */
export class MemoryPersistence implements PersistenceAdapter {
  readonly durable = false
  private readonly sessions = new Map<string, StoredSession>()
  private readonly messages = new Map<number, { message: StoredMessage; refs: number }>()
  private readonly retained = new Map<string, StoredMessage>()
  private lastMessageId = 0
  /** Messages whose last delivery went in the batch being applied. */
  private readonly released = new Set<number>()

  open(): RestoredState {
    const sessions: RestoredSession[] = []
    for (const [clientId, s] of this.sessions) {
      const restored: RestoredSession = {
        clientId,
        expiryInterval: s.expiryInterval,
        subscriptions: [...s.subscriptions.values()],
        deliveries: [...s.deliveries.values()].map((d) => ({ ...d })),
        incomingQos2: [...s.incomingQos2],
      }
      if (s.disconnectedAt !== undefined) restored.disconnectedAt = s.disconnectedAt
      if (s.will !== undefined) restored.will = { ...s.will }
      sessions.push(restored)
    }
    return { sessions, retained: [...this.retained.values()], lastMessageId: this.lastMessageId }
  }

  commit(ops: readonly PersistenceOp[]): void {
    for (const op of ops) this.apply(op)
    // Forgotten only now: a later operation of the batch may still refer to them.
    for (const id of this.released) if (this.messages.get(id)?.refs === 0) this.messages.delete(id)
    this.released.clear()
  }

  close(): void {}

  private apply(op: PersistenceOp): void {
    switch (op.op) {
      case 'sessionCreate':
        this.deleteSession(op.clientId)
        this.sessions.set(op.clientId, {
          expiryInterval: op.expiryInterval,
          disconnectedAt: undefined,
          subscriptions: new Map(),
          deliveries: new Map(),
          incomingQos2: new Set(),
          will: undefined,
        })
        return
      case 'sessionUpdate': {
        const s = this.sessions.get(op.clientId)
        if (s === undefined) return
        s.expiryInterval = op.expiryInterval
        s.disconnectedAt = op.disconnectedAt
        return
      }
      case 'sessionDelete':
        this.deleteSession(op.clientId)
        return
      case 'subscribe':
        this.sessions.get(op.clientId)?.subscriptions.set(op.subscription.topicFilter, op.subscription)
        return
      case 'unsubscribe':
        this.sessions.get(op.clientId)?.subscriptions.delete(op.topicFilter)
        return
      case 'message':
        if (op.messageId > this.lastMessageId) this.lastMessageId = op.messageId
        if (!this.messages.has(op.messageId)) this.messages.set(op.messageId, { message: op.message, refs: 0 })
        return
      case 'enqueue': {
        const s = this.sessions.get(op.clientId)
        const stored = this.messages.get(op.messageId)
        if (s === undefined || stored === undefined || s.deliveries.has(op.seq)) return
        stored.refs++
        const delivery: RestoredDelivery = { seq: op.seq, messageId: op.messageId, message: stored.message, qos: op.qos, retain: op.retain, state: 'queued' }
        if (op.subscriptionIds !== undefined) delivery.subscriptionIds = op.subscriptionIds
        if (op.shareGroup !== undefined) delivery.shareGroup = op.shareGroup
        s.deliveries.set(op.seq, delivery)
        return
      }
      case 'sent': {
        const d = this.sessions.get(op.clientId)?.deliveries.get(op.seq)
        if (d === undefined) return
        d.packetId = op.packetId
        if (d.state === 'queued') d.state = 'sent'
        return
      }
      case 'received': {
        const d = this.sessions.get(op.clientId)?.deliveries.get(op.seq)
        if (d !== undefined && d.packetId !== undefined) d.state = 'received'
        return
      }
      case 'dequeue': {
        const s = this.sessions.get(op.clientId)
        const d = s?.deliveries.get(op.seq)
        if (s === undefined || d === undefined) return
        s.deliveries.delete(op.seq)
        this.release(d.messageId)
        return
      }
      case 'qos2Received':
        this.sessions.get(op.clientId)?.incomingQos2.add(op.packetId)
        return
      case 'qos2Released':
        this.sessions.get(op.clientId)?.incomingQos2.delete(op.packetId)
        return
      case 'will': {
        const s = this.sessions.get(op.clientId)
        if (s === undefined) return
        if (op.will === null) s.will = undefined
        else s.will = op.publishAt === undefined ? { message: op.will } : { message: op.will, publishAt: op.publishAt }
        return
      }
      case 'retain':
        this.retained.set(op.message.topic, op.message)
        return
      case 'unretain': {
        const current = this.retained.get(op.topic)
        if (current !== undefined && (op.receivedAt === undefined || current.receivedAt === op.receivedAt)) this.retained.delete(op.topic)
        return
      }
    }
  }

  private deleteSession(clientId: string): void {
    const s = this.sessions.get(clientId)
    if (s === undefined) return
    for (const d of s.deliveries.values()) this.release(d.messageId)
    this.sessions.delete(clientId)
  }

  private release(messageId: number): void {
    const stored = this.messages.get(messageId)
    if (stored !== undefined && --stored.refs <= 0) this.released.add(messageId)
  }
}
