import type { Counters, DropReason } from '../metrics/counters.js'
import type { QoS, Subscription, WillMessage } from '../protocol/packets.js'
import type { RestoredDelivery, RestoredSession, StoredMessage } from '../persistence/adapter.js'
import { RoutedMessage } from './routed-message.js'

/** What a session needs from the connection it is attached to. */
export interface SessionLink {
  /**
   * Writes a PUBLISH of `message` at `qos` (packetId 0 for QoS 0); returns false when the client
   * cannot take it (larger than its Maximum Packet Size [MQTT-3.1.2-25]) and it was dropped.
   */
  sendPublish(message: RoutedMessage, qos: QoS, retain: boolean, packetId: number, dup: boolean, subscriptionIds: number[] | undefined): boolean
  sendPubrel(packetId: number): void
  /** True when the write buffer is over its bound: QoS 0 messages are dropped rather than buffered. */
  isCongested(): boolean
}

/**
 * How many retained messages one drain sends before it lets the event loop turn (a SUBSCRIBE to
 * '#' over a large retained store must not hold up other clients).
 */
const RETAINED_PER_TURN = 1024

/** The shared subscription a message came through; it can hand the message to another member. */
export interface SharedOrigin {
  /** Its full filter, '$share/{ShareName}/{filter}', under which a stored delivery remembers it. */
  readonly name: string
  deliverExcept(message: RoutedMessage, except: Session): boolean
}

/**
 * Where a persistent session reports the life of its QoS 1/2 deliveries, so they can be stored,
 * and learns when a PUBLISH may be written: only once the delivery and its packet identifier are
 * committed. Written earlier, a crash would restore the delivery as never sent, and it would go
 * again as a new message with a new identifier: twice, for a QoS 2 subscriber.
 */
export interface DeliveryLog {
  enqueued(session: Session, seq: number, message: RoutedMessage, qos: 1 | 2, retain: boolean, ids: number[] | undefined, group: SharedOrigin | undefined): void
  sent(session: Session, seq: number, packetId: number): void
  received(session: Session, seq: number): void
  removed(session: Session, seq: number): void
  /** Calls `write` once what is recorded now is committed: at once when the store is not durable. */
  whenCommitted(write: () => void): void
}

interface Inflight {
  message: RoutedMessage
  qos: 1 | 2
  retain: boolean
  ids: number[] | undefined
  state: 'publish' | 'pubrel'
  /** The shared subscription it came through, to hand it to another member if this session ends. */
  group: SharedOrigin | undefined
  /** Its number in the session's delivery log (persistent sessions; 0 otherwise). */
  seq: number
}

export interface Queued {
  message: RoutedMessage
  qos: QoS
  retain: boolean
  ids: number[] | undefined
  group: SharedOrigin | undefined
  seq: number
}

/**
 * The retained messages matching a new subscription, waiting their turn in the queue: they are
 * sent one by one as the in-flight window and the write buffer allow, in the order of the queue
 * (after what was queued before the SUBSCRIBE, before what arrives after it).
 */
interface RetainedBatch {
  readonly retained: readonly StoredMessage[]
  next: number
  /** The subscription they were matched for; if it is replaced or removed, the rest are not sent. */
  readonly subscription: Subscription
  readonly ids: number[] | undefined
}

type QueueEntry = Queued | RetainedBatch

function isBatch(entry: QueueEntry): entry is RetainedBatch {
  return (entry as RetainedBatch).retained !== undefined
}

/** An MQTT 5 will waiting for its Will Delay Interval. */
export interface PendingWill {
  timer: NodeJS.Timeout
  /** Publishes it now. */
  fire: () => void
  readonly client: object
  readonly will: WillMessage
  /** When it is due (ms since the epoch). */
  readonly publishAt: number
}

/** Bounds a session works within. */
export interface SessionLimits {
  maxInflight: number
  maxQueued: number
  /** Bytes of queued messages (payload and topic); 0: no limit. */
  maxQueuedBytes: number
  /** Where drops are counted by reason (the broker's counters); absent: only `session.dropped`. */
  readonly counters?: Counters
  /** The host's `authorizeDeliver`, asked before a message goes to this session; absent: all may. */
  readonly mayDeliver?: (session: Session, message: RoutedMessage) => boolean
}

/** What a queued message counts against `maxQueuedBytes`. */
function queuedSize(message: RoutedMessage): number {
  return message.payload.length + message.topic.length
}

/**
 * What outlives a connection: subscriptions, in-flight QoS 1/2 state, the queue of messages
 * waiting to be sent. A connection attaches to it; while none is attached, QoS 1/2 messages queue
 * (bounded) and QoS 0 messages are dropped.
 */
export class Session {
  link: SessionLink | null = null
  readonly subscriptions = new Map<string, Subscription>()
  private incomingQos2Set: Set<number> | undefined
  /** Incoming QoS 2 packet identifiers delivered and awaiting PUBREL (exactly-once, [MQTT-4.3.3-2]). */
  get incomingQos2(): Set<number> {
    return (this.incomingQos2Set ??= new Set())
  }

  /** How many incoming QoS 2 messages await their PUBREL. */
  get incomingQos2Count(): number {
    return this.incomingQos2Set?.size ?? 0
  }
  /** The user name of the client's last connection (in memory only: undefined for a session restored from the store until it connects). */
  username: string | undefined
  /**
   * Whether a client has connected to it in this process, so `username` is its own. A session
   * restored from the store is not, until its client connects: `authorizeDeliver` cannot judge
   * messages for it meanwhile; they are queued and judged when sent (as every queued message is).
   */
  identified = false
  /** The will of the attached connection, kept for persistence. */
  will: WillMessage | undefined
  /** Messages dropped because the queue was full or the client too slow (QoS 0), or too large for the client. */
  dropped = 0
  /** Bytes of the messages waiting in the queue (payload and topic). */
  queuedBytes = 0
  /** Seconds the session outlives its connection (0xFFFFFFFF: for ever). */
  expiryInterval = 0
  /** Since when no connection is attached (ms since the epoch), for a persistent session; undefined while one is. */
  disconnectedAt: number | undefined
  /** Pending expiry while no connection is attached. */
  expiryTimer: NodeJS.Timeout | undefined
  /** An MQTT 5 will waiting for its Will Delay Interval; `fire` publishes it at once. */
  pendingWill: PendingWill | undefined
  /** A delayed will that a connection still waiting for its CONNACK cancelled: back if that connection never gets it. */
  cancelledWill: PendingWill | undefined

  /**
   * Whether the store holds a record of the session and its will: persistent sessions, and in a
   * cluster every session (its will must survive its node, and its owner be known).
   */
  get recorded(): boolean {
    return this.persistent || this.clusterRecord
  }

  /** A session that is not persistent but has a stored record all the same (cluster mode). */
  clusterRecord = false

  /** Where a persistent session's deliveries are recorded for storing; null for others. */
  log: DeliveryLog | null = null
  /** The connection that opened (or resumed) it and waits for its CONNACK, until it is attached. */
  claimant: object | null = null

  /** Routing marks: the publish generation this session was last matched in, and the best QoS then. */
  matchGen = 0
  matchQos: QoS = 0
  matchIds: number[] | undefined = undefined
  matchRetainAsPublished = false
  /**
   * The session of an outgoing bridge with `forwardBridged: false`: left out of messages that came
   * from another broker (published by a bridge), so they never go to its remote; and what it
   * publishes (what came in from its remote) does not go to `incomingBridge` sessions. In memory
   * only: the broker sets it for each session of that client id (`refuseBridged`).
   */
  refusesBridged = false
  /**
   * The session of another broker's bridge: its last connection had the bridge flag. Set at each
   * CONNECT; false for a session restored from the store until its client connects again.
   */
  incomingBridge = false
  /** Unacknowledged messages allowed towards the client: maxInflight, or less if its Receive Maximum says so. */
  inflightLimit: number

  // The collections below are made when first used: an idle session with QoS 0 traffic never
  // needs them, and each empty Map or Set costs about 150-180 bytes.
  private inflightMap: Map<number, Inflight> | undefined
  private get inflight(): Map<number, Inflight> {
    return (this.inflightMap ??= new Map())
  }

  private unsentSet: Set<number> | undefined
  /**
   * In-flight messages of an earlier connection not re-sent yet, because the client's new
   * Receive Maximum is lower than what was in flight [MQTT-3.3.4-9]; sent with DUP, in order,
   * as the window frees.
   */
  private get unsent(): Set<number> {
    return (this.unsentSet ??= new Set())
  }
  private queue: QueueEntry[] = []
  private queueHead = 0
  /** No queued message expires before this time (ms; Infinity: none has an expiry). */
  private queueExpiresAt = Infinity
  private nextPacketId = 1
  /** The number of the next delivery logged. */
  private nextSeq = 1
  private drainScheduled = false

  constructor(
    readonly clientId: string,
    public persistent: boolean,
    private readonly limits: SessionLimits,
  ) {
    this.inflightLimit = limits.maxInflight
  }

  get queuedCount(): number {
    return this.queue.length - this.queueHead
  }

  get inflightCount(): number {
    return this.inflightMap?.size ?? 0
  }

  /** Whether a connection is attached (for shared subscriptions, which prefer online members). */
  get online(): boolean {
    return this.link !== null
  }

  /** Whether a new QoS 1/2 PUBLISH may be sent now: nothing waits to be re-sent and the in-flight window has room. */
  private get windowOpen(): boolean {
    return (this.unsentSet?.size ?? 0) === 0 && this.inflightCount < this.inflightLimit
  }

  /** Delivers a message at `qos` (already the minimum of the message's and the subscription's). */
  deliver(
    message: RoutedMessage,
    qos: QoS,
    retain = false,
    ids: number[] | undefined = undefined,
    group: SharedOrigin | undefined = undefined,
  ): void {
    const link = this.link
    const mayDeliver = this.limits.mayDeliver
    if (qos === 0) {
      if (link === null) return this.drop('offline')
      if (mayDeliver !== undefined && !mayDeliver(this, message)) return
      if (link.isCongested()) this.drop('write_buffer')
      else if (!link.sendPublish(message, 0, retain, 0, false, ids)) this.drop('too_large')
      return
    }
    // A session restored from the store, its client not back yet, has no known user to judge:
    // its messages queue, and are judged, as every queued message is, when they are sent.
    if (mayDeliver !== undefined && (link !== null || this.identified) && !mayDeliver(this, message)) return
    // Order is kept by never overtaking what is already queued [MQTT-4.6.0-6].
    const direct = link !== null && this.queueHead === this.queue.length && this.windowOpen
    if (!direct && this.queueFull(message)) {
      this.drop('queue_full')
      return
    }
    message.ownPayload()
    const log = this.log
    let seq = 0
    if (log !== null) {
      seq = this.nextSeq++
      log.enqueued(this, seq, message, qos, retain, ids, group)
    }
    if (direct) {
      this.sendInflight(link, message, qos, retain, ids, group, seq)
      return
    }
    this.queue.push({ message, qos, retain, ids, group, seq })
    this.queuedBytes += queuedSize(message)
    const expiresAt = message.expiresAt()
    if (expiresAt < this.queueExpiresAt) this.queueExpiresAt = expiresAt
  }

  /** Whether a message does not fit in the queue, even once expired messages have made room. */
  private queueFull(message: RoutedMessage): boolean {
    if (!this.overLimits(message)) return false
    this.pruneExpired()
    return this.overLimits(message)
  }

  private overLimits(message: RoutedMessage): boolean {
    if (this.queuedCount >= this.limits.maxQueued) return true
    const maxBytes = this.limits.maxQueuedBytes
    return maxBytes > 0 && this.queuedBytes + queuedSize(message) > maxBytes
  }

  /** Handles PUBACK (QoS 1) or PUBCOMP (QoS 2); returns whether the packet id was in flight. */
  complete(packetId: number, kind: 'puback' | 'pubcomp'): boolean {
    const entry = this.inflight.get(packetId)
    if (entry === undefined) return false
    if (kind === 'puback' ? entry.qos !== 1 : entry.state !== 'pubrel') return false
    this.inflight.delete(packetId)
    if (this.unsentSet !== undefined && this.unsentSet.size > 0) this.unsentSet.delete(packetId)
    this.log?.removed(this, entry.seq)
    this.drain()
    return true
  }

  /** MQTT 5 PUBREC with an error code: the receiver refused the message; it is forgotten. */
  refused(packetId: number): void {
    const entry = this.inflight.get(packetId)
    if (entry === undefined || entry.qos !== 2 || entry.state !== 'publish') return
    this.inflight.delete(packetId)
    this.unsent.delete(packetId)
    this.log?.removed(this, entry.seq)
    this.drain()
  }

  /** Handles PUBREC: the message is now owned by the receiver; PUBREL follows. */
  received(packetId: number): boolean {
    const entry = this.inflight.get(packetId)
    if (entry === undefined || entry.qos !== 2) return false
    if (entry.state === 'pubrel') return true
    entry.state = 'pubrel'
    // The client had it from an earlier connection: it needs no re-sending.
    this.unsent.delete(packetId)
    this.log?.received(this, entry.seq)
    return true
  }

  /**
   * Attaches a connection: resends what is in flight [MQTT-4.4.0-1], within the client's Receive
   * Maximum [MQTT-3.3.4-9] (the rest as the window frees), then drains the queue.
   */
  attach(link: SessionLink): void {
    this.link = link
    this.unsentSet?.clear()
    // A message awaiting PUBCOMP still holds its place in the window; PUBREL is re-sent for it.
    let open = 0
    const inflight = this.inflightMap
    if (inflight !== undefined) for (const entry of inflight.values()) if (entry.state === 'pubrel') open++
    if (inflight !== undefined) for (const [packetId, entry] of inflight) {
      if (entry.state === 'pubrel') link.sendPubrel(packetId)
      else if (open < this.inflightLimit) {
        open++
        this.resend(link, packetId, entry)
      } else this.unsent.add(packetId)
    }
    this.drain()
  }

  /** Re-sends an in-flight PUBLISH with DUP; one the client can no longer take gives up its place. */
  private resend(link: SessionLink, packetId: number, entry: Inflight): void {
    if (link.sendPublish(entry.message, entry.qos, entry.retain, packetId, true, entry.ids)) return
    // Over the client's new Maximum Packet Size [MQTT-3.1.2-25]: it cannot be delivered, and must
    // not hold a packet identifier and a place in the window for ever.
    this.inflight.delete(packetId)
    this.drop('too_large')
    this.log?.removed(this, entry.seq)
  }

  /** A message that will not reach the client: counted here and, by reason, in the broker's counters. */
  private drop(reason: DropReason): void {
    this.dropped++
    this.limits.counters?.drop(reason)
  }

  /** The link's write buffer drained: retained messages waiting for room can go on. */
  writable(): void {
    if (this.queueHead < this.queue.length) this.drain()
  }

  /**
   * Streams retained messages matched for a new subscription, behind what is already queued,
   * under flow control. Returns how many were sent at once.
   */
  sendRetained(retained: readonly StoredMessage[], subscription: Subscription): number {
    if (retained.length === 0 || this.link === null) return 0
    const ids = subscription.subscriptionIdentifier === undefined ? undefined : [subscription.subscriptionIdentifier]
    this.queue.push({ retained, next: 0, subscription, ids })
    return this.drain()
  }

  detach(): void {
    this.link = null
    this.will = undefined
    this.unsentSet?.clear()
    // Retained messages are sent for a subscription on the connection that made it; a client
    // gone in the middle of them does not get the rest later.
    this.queue = this.queue.filter((entry, i) => i >= this.queueHead && !isBatch(entry))
    this.queueHead = 0
  }

  /**
   * Every QoS 1/2 delivery it holds, in flight first (with its packet identifier and state), then
   * queued, in order: what a checkpoint of the session writes.
   */
  *deliveries(): Generator<{ entry: Queued; packetId: number | undefined; state: 'queued' | 'sent' | 'received' }> {
    if (this.inflightMap !== undefined) for (const [packetId, entry] of this.inflightMap) yield { entry, packetId, state: entry.state === 'pubrel' ? 'received' : 'sent' }
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const entry = this.queue[i] as QueueEntry
      if (!isBatch(entry) && entry.qos > 0) yield { entry, packetId: undefined, state: 'queued' }
    }
  }

  /**
   * QoS 1/2 messages that came through shared subscriptions and were not yet received by this
   * client (queued, or sent and not acknowledged), taken out so another member can have them.
   */
  takeShared(): Array<{ message: RoutedMessage; group: SharedOrigin }> {
    const taken: Array<{ message: RoutedMessage; group: SharedOrigin }> = []
    if (this.inflightMap !== undefined) for (const [packetId, e] of this.inflightMap) {
      if (e.group === undefined || e.state !== 'publish') continue
      taken.push({ message: e.message, group: e.group })
      this.inflight.delete(packetId)
    }
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const q = this.queue[i] as QueueEntry
      if (!isBatch(q) && q.group !== undefined && q.qos > 0) taken.push({ message: q.message, group: q.group })
    }
    return taken
  }

  /** Forgets in-flight and queued messages (a clean session ending, or a clean start). */
  clear(): void {
    this.inflightMap?.clear()
    this.unsentSet?.clear()
    this.queue = []
    this.queueHead = 0
    this.queuedBytes = 0
    this.queueExpiresAt = Infinity
    this.incomingQos2Set?.clear()
    this.subscriptions.clear()
  }

  /**
   * Removes queued messages whose expiry has passed [MQTT-3.3.2-5]: they will never be sent, so
   * they must not keep fresh ones out of a full queue. Returns how many went. O(queue), and
   * only called when the queue is full.
   */
  private pruneExpired(): number {
    const now = Date.now()
    // Nothing queued can have expired yet: a flood into a full queue does not rescan it per message.
    if (now < this.queueExpiresAt) return 0
    const waiting = this.queuedCount
    this.queue = this.queue.slice(this.queueHead).filter((q) => {
      if (isBatch(q) || !q.message.isExpired(now)) return true
      this.limits.counters?.drop('expired')
      this.forget(q)
      return false
    })
    this.queueHead = 0
    this.queueExpiresAt = Infinity
    for (const q of this.queue) if (!isBatch(q)) this.queueExpiresAt = Math.min(this.queueExpiresAt, q.message.expiresAt())
    return waiting - this.queue.length
  }

  /**
   * Sends what waits, in order, while the window allows: in-flight messages of an earlier
   * connection not re-sent yet, then the queue. Returns how many messages it sent.
   */
  private drain(): number {
    const link = this.link
    if (link === null) return 0
    let sent = 0
    if (this.unsentSet !== undefined && this.unsentSet.size > 0) for (const packetId of this.unsentSet) {
      if (this.inflight.size - this.unsent.size >= this.inflightLimit) return sent
      this.unsent.delete(packetId)
      this.resend(link, packetId, this.inflight.get(packetId) as Inflight)
      sent++
    }
    const now = Date.now()
    while (this.queueHead < this.queue.length) {
      const next = this.queue[this.queueHead] as QueueEntry
      if (isBatch(next)) {
        const n = this.drainRetained(link, next, now, RETAINED_PER_TURN - sent)
        sent += n
        if (next.next < next.retained.length) {
          // Waiting for room (acks, the write buffer), or for the next turn.
          if (sent >= RETAINED_PER_TURN) this.drainNextTurn()
          break
        }
        this.queueHead++
        continue
      }
      if (next.qos > 0 && !this.windowOpen) break
      this.queueHead++
      this.queuedBytes -= queuedSize(next.message)
      // [MQTT-3.3.2-5] an expired message still waiting is not sent
      if (next.message.isExpired(now)) {
        this.limits.counters?.drop('expired')
        this.log?.removed(this, next.seq)
        continue
      }
      // Judged again when sent: it waited (a restart, an ACL reload, another user on the client id since).
      if (this.limits.mayDeliver?.(this, next.message) === false) {
        this.log?.removed(this, next.seq)
        continue
      }
      if (next.qos === 0) link.sendPublish(next.message, 0, next.retain, 0, false, next.ids)
      else this.sendInflight(link, next.message, next.qos, next.retain, next.ids, next.group, next.seq)
      sent++
    }
    if (this.queueHead === this.queue.length) {
      this.queue = []
      this.queueHead = 0
    } else if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.queueHead)
      this.queueHead = 0
    }
    return sent
  }

  /** Sends up to `budget` of a batch's retained messages while there is room; returns how many. */
  private drainRetained(link: SessionLink, batch: RetainedBatch, now: number, budget: number): number {
    // [MQTT-3.8.4-3] a replaced or removed subscription takes its remaining retained messages with it
    if (this.subscriptions.get(batch.subscription.topicFilter) !== batch.subscription) {
      batch.next = batch.retained.length
      return 0
    }
    const granted = batch.subscription.qos
    let sent = 0
    while (batch.next < batch.retained.length && sent < budget) {
      const stored = batch.retained[batch.next] as StoredMessage
      const qos = stored.qos < granted ? stored.qos : granted
      if (qos === 0 ? link.isCongested() : !this.windowOpen) break
      batch.next++
      const message = RoutedMessage.from(stored)
      // [MQTT-3.3.2-5] an expired retained message is not sent
      if (message.isExpired(now)) continue
      // Read access is checked per retained message too, as Mosquitto's acl_file does.
      const mayDeliver = this.limits.mayDeliver
      if (mayDeliver !== undefined && !mayDeliver(this, message)) continue
      // [MQTT-3.3.1-8] a retained message sent for a new subscription carries RETAIN 1
      if (qos === 0) {
        link.sendPublish(message, 0, true, 0, false, batch.ids)
      } else {
        // Logged like any delivery, so its in-flight state outlives a restart.
        let seq = 0
        if (this.log !== null) {
          seq = this.nextSeq++
          this.log.enqueued(this, seq, message, qos, true, batch.ids, undefined)
        }
        this.sendInflight(link, message, qos, true, batch.ids, undefined, seq)
      }
      sent++
    }
    return sent
  }

  private drainNextTurn(): void {
    if (this.drainScheduled) return
    this.drainScheduled = true
    setImmediate(() => {
      this.drainScheduled = false
      this.drain()
    })
  }

  private sendInflight(
    link: SessionLink,
    message: RoutedMessage,
    qos: 1 | 2,
    retain: boolean,
    ids: number[] | undefined,
    group: SharedOrigin | undefined,
    seq: number,
  ): void {
    const packetId = this.allocatePacketId()
    message.ownPayload()
    const entry: Inflight = { message, qos, retain, ids, group, state: 'publish', seq }
    this.inflight.set(packetId, entry)
    const log = this.log
    if (log === null) {
      this.write(link, packetId, entry)
      return
    }
    log.sent(this, seq, packetId)
    log.whenCommitted(() => {
      // A client gone meanwhile gets it again, with DUP, when it reconnects (the entry stays in flight).
      if (this.link === link && this.inflight.get(packetId) === entry && entry.state === 'publish') this.write(link, packetId, entry)
    })
  }

  /** Writes an in-flight PUBLISH the first time; one the client cannot take gives up its place. */
  private write(link: SessionLink, packetId: number, entry: Inflight): void {
    if (link.sendPublish(entry.message, entry.qos, entry.retain, packetId, false, entry.ids)) return
    this.inflight.delete(packetId)
    this.drop('too_large')
    this.log?.removed(this, entry.seq)
  }

  /** A queued entry leaves without being sent. */
  private forget(entry: Queued): void {
    this.queuedBytes -= queuedSize(entry.message)
    this.log?.removed(this, entry.seq)
  }

  private allocatePacketId(): number {
    // The next identifier is usually free; only a window near 65,535 (maxInflight allows it) makes this scan long.
    let id = this.nextPacketId
    while (this.inflight.has(id)) id = id === 65535 ? 1 : id + 1
    this.nextPacketId = id === 65535 ? 1 : id + 1
    return id
  }

  /** Rebuilds a persistent session from the store, but for its deliveries (`restoreDeliveries`, once subscriptions are routed). */
  static restore(stored: RestoredSession, limits: SessionLimits, log: DeliveryLog | null): Session {
    const session = new Session(stored.clientId, true, limits)
    session.log = log
    for (const s of stored.subscriptions) session.subscriptions.set(s.topicFilter, s)
    for (const id of stored.incomingQos2) session.incomingQos2.add(id)
    session.expiryInterval = stored.expiryInterval
    return session
  }

  /**
   * Restores in-flight messages (re-sent when a client attaches) and the queue. `groups` finds
   * the shared subscription a delivery came through, by name.
   */
  restoreDeliveries(deliveries: readonly RestoredDelivery[], groups: (name: string) => SharedOrigin | undefined): void {
    for (const d of deliveries) {
      const message = RoutedMessage.from(d.message)
      message.storeId = d.messageId
      const group = d.shareGroup === undefined ? undefined : groups(d.shareGroup)
      const entry = { message, qos: d.qos, retain: d.retain, ids: d.subscriptionIds, group, seq: d.seq }
      if (d.state === 'queued' || d.packetId === undefined) {
        this.queue.push(entry)
        this.queuedBytes += queuedSize(message)
      } else {
        this.inflight.set(d.packetId, { ...entry, state: d.state === 'received' ? 'pubrel' : 'publish' })
      }
      if (d.seq >= this.nextSeq) this.nextSeq = d.seq + 1
    }
    // Unknown until scanned: the first full queue looks for expired messages.
    this.queueExpiresAt = 0
  }
}
