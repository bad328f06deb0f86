import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { Connection, type ConnectionInfo } from './connection/connection.js'
import type { BrokerContext } from './connection/context.js'
import type { BrokerEvents } from './hooks/events.js'
import type { AcceptConnectionHook, AcceptRequest, AuthorizeDeliverHook, Client, ClientSummary, DisconnectReason } from './hooks/types.js'
import { log } from './logging.js'
import type { BrokerHealth } from './broker.js'
import { collectStats, type StatsSource } from './metrics/collect.js'
import { Counters } from './metrics/counters.js'
import { EventLoopMonitor, STALLED_MS } from './metrics/event-loop.js'
import type { BrokerStats } from './metrics/stats.js'
import { Protection } from './protection/protection.js'
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, type Ban, type BrokerOptions, type Capabilities, type Limits } from './options.js'
import { ClusterNode, type ClusterHost } from './cluster/node.js'
import { ClusterSharedGroup } from './cluster/shared-group.js'
import type { PersistenceAdapter, RestoredSession, StoredMessage } from './persistence/adapter.js'
import { Journal } from './persistence/journal.js'
import { MemoryPersistence } from './persistence/memory.js'
import type { QoS, Subscription, WillMessage } from './protocol/packets.js'
import { ReasonCode } from './protocol/reason-codes.js'
import { topicMatches } from './protocol/topics.js'
import { RetainedMessages } from './routing/retained-messages.js'
import { Router, type Subscriber } from './routing/router.js'
import { parseSharedFilter, SharedGroup, type SharedMember } from './routing/shared-group.js'
import { LocalSubscriber } from './session/local-subscriber.js'
import { RoutedMessage } from './session/routed-message.js'
import { Session, type SessionLimits } from './session/session.js'
import { SessionStore } from './session/session-store.js'
import { Wills } from './session/wills.js'

/** A Session Expiry Interval of 0xFFFFFFFF: the session never expires. */
const NEVER_EXPIRES = 0xffffffff
const MAX_TIMEOUT_MS = 2_147_483_647

/** Connections accepted past maxConnections, only to be refused in CONNACK (3, server unavailable; MQTT 5: 0x97). */
const HANDSHAKE_HEADROOM = 16

/** Ranges the limits must fall in: a packet identifier space of 65,535, a 16-bit keep alive, ... */
const LIMIT_RANGES: Record<keyof Limits, [number, number]> = {
  maxConnections: [1, Number.MAX_SAFE_INTEGER],
  maxPacketSize: [2, 268_435_460],
  maxKeepAlive: [0, 65_535],
  connectTimeoutMs: [1, 2_147_483_647],
  maxInflight: [1, 65_535],
  maxQueued: [0, Number.MAX_SAFE_INTEGER],
  maxQueuedBytes: [0, Number.MAX_SAFE_INTEGER],
  persistentSessionExpiry: [0, 0xffffffff],
  maxSubscriptionsPerClient: [0, Number.MAX_SAFE_INTEGER],
  maxWriteBuffer: [0, Number.MAX_SAFE_INTEGER],
  receiveMaximum: [1, 65_535],
  maxPublishRate: [0, Number.MAX_SAFE_INTEGER],
  topicAliasMaximum: [0, 65_535],
  maxSessionExpiryInterval: [0, 0xffffffff],
}

/** Rejects limits the broker cannot honour (a maxInflight of 100,000 would exhaust packet identifiers). */
function validateLimits(limits: Limits): Readonly<Limits> {
  for (const [name, [min, max]] of Object.entries(LIMIT_RANGES) as Array<[keyof Limits, [number, number]]>) {
    const value = limits[name]
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new RangeError(`limits.${name} must be an integer from ${min} to ${max}, got ${String(value)}`)
    }
  }
  return Object.freeze(limits)
}

/** Stands for a client whose connection ended in an earlier run, for hooks and events. */
function offlineClient(id: string, username?: string): Client {
  const summary: ClientSummary = {
    id,
    username,
    remoteAddress: undefined,
    remotePort: undefined,
    transport: 'stream',
    certificate: undefined,
    protocolVersion: 4,
    cleanSession: false,
    keepAlive: 0,
    connected: false,
    bridge: false,
  }
  return { ...summary, request: undefined, close: () => {}, toJSON: () => summary }
}

/** What can be routed to: a client's session or an in-process subscriber, alone or in a shared group. */
type RouteTarget = Subscriber<RoutedMessage> & SharedMember<RoutedMessage>

type Emit = <E extends keyof BrokerEvents>(event: E, ...args: Parameters<BrokerEvents[E]>) => void

/**
 * The broker's shared state and the operations connections call: sessions and their lifecycle,
 * routing and shared subscriptions. Retained messages, wills and the way to the store each have
 * their own owner (`RetainedMessages`, `Wills`, `Journal` with `SessionStore`). The public
 * `Broker` wraps it; connections see it as `BrokerContext`.
 */
export class BrokerCore implements BrokerContext, ClusterHost {
  readonly limits: Readonly<Limits>
  readonly capabilities: Readonly<Capabilities>
  readonly authenticate
  readonly enhancedAuthenticate
  readonly authorizePublish
  readonly authorizeSubscribe
  readonly persistence: PersistenceAdapter
  /** Cluster mode: this process's part in the cluster (`options.cluster`). */
  readonly cluster: ClusterNode | undefined
  readonly journal: Journal
  readonly store: SessionStore
  readonly retained: RetainedMessages
  readonly wills: Wills
  readonly router = new Router<RoutedMessage>()
  readonly sessions = new Map<string, Session>()
  /** The client ids whose sessions refuse messages from other brokers (`refuseBridged`). */
  private readonly refusingBridged = new Set<string>()
  /** Shared subscriptions by their full '$share/{ShareName}/{filter}'. */
  private readonly sharedGroups = new Map<string, SharedGroup<RoutedMessage>>()
  /** Every open network connection, connected or still in the CONNECT handshake. */
  readonly connections = new Set<Connection>()
  /** Connected clients (past CONNACK) by client identifier. */
  readonly clients = new Map<string, Connection>()
  private clientIdCounter = 0
  /** The connection whose CONNECT for a client identifier arrived last, while it is being decided. */
  private readonly latestConnect = new Map<string, Connection>()
  private readonly clientIdPrefix = `culex-${randomBytes(4).toString('hex')}-`
  /** Sessions waiting to expire, so close() can stop their timers. */
  private readonly expiring = new Set<Session>()
  /** Set while a cluster node drops its clients as if it had crashed (`forgetSessions`). */
  private dropping = false
  /** Set when the broker closes: no new timers (the store keeps the due times for the next broker). */
  private timersStopped = false
  /** Running totals for stats(), $SYS and metrics. */
  readonly counters = new Counters()
  /** What sessions are built with: their limits, the counters, the `authorizeDeliver` check. */
  private readonly sessionLimits: SessionLimits
  readonly startedAt = Date.now()
  readonly protection: Protection
  readonly acceptConnection: AcceptConnectionHook | undefined
  /** Started last in the constructor, so a constructor that throws leaves nothing running. */
  private readonly eventLoop: EventLoopMonitor
  /** Set once drain() began: no new connections, not ready. */
  draining = false
  /** Whether the host listens to `publish`: the per-message event is skipped (no argument array) when not. Kept by Broker. */
  publishListened = false

  constructor(
    options: BrokerOptions,
    readonly emit: Emit,
  ) {
    this.limits = validateLimits({ ...DEFAULT_LIMITS, ...options.limits })
    const authorizeDeliver = options.authorizeDeliver
    this.sessionLimits = Object.freeze({
      maxInflight: this.limits.maxInflight,
      maxQueued: this.limits.maxQueued,
      maxQueuedBytes: this.limits.maxQueuedBytes,
      counters: this.counters,
      ...(authorizeDeliver === undefined ? {} : { mayDeliver: (session: Session, message: RoutedMessage) => this.mayDeliver(authorizeDeliver, session, message) }),
    })
    this.capabilities = Object.freeze({ ...DEFAULT_CAPABILITIES, ...options.capabilities })
    this.authenticate = options.authenticate
    this.enhancedAuthenticate = options.enhancedAuthenticate
    this.authorizePublish = options.authorizePublish
    this.authorizeSubscribe = options.authorizeSubscribe
    this.acceptConnection = options.acceptConnection
    this.protection = new Protection(options.protection ?? {}, this.counters)
    if (options.cluster !== undefined) {
      // One option sets the store and the bus together, so they cannot disagree.
      if (options.persistence !== undefined) {
        throw new TypeError('cluster mode keeps sessions and retained messages in the cluster\'s Redis: remove the persistence option (cluster and persistence cannot both be given)')
      }
      this.cluster = new ClusterNode(options.cluster)
      this.cluster.routes.hasLocalMembers = (group) => (this.sharedGroups.get(group)?.size ?? 0) > 0
    }
    this.persistence = this.cluster?.store ?? options.persistence ?? new MemoryPersistence()
    this.journal = new Journal(this.persistence, (error) => this.emit('persistenceError', error))
    this.store = new SessionStore(this.journal)
    this.retained = new RetainedMessages(this.journal)
    this.wills = new Wills(this)
    this.eventLoop = new EventLoopMonitor()
  }

  /** Restores the persistent sessions and retained messages an earlier run left in the store. */
  async restore(): Promise<void> {
    const state = await this.persistence.open()
    this.retained.restore(state.retained)
    // A cluster node loads the sessions it owns when it joins.
    if (this.cluster !== undefined) return this.cluster.start(this)
    this.installSessions(state.sessions, state.lastMessageId ?? 0)
  }

  /**
   * Puts stored sessions in memory as a restart finds them: routed, with their deliveries, their
   * wills due (a will stored without a due time belonged to a connection that ended unseen) and
   * their expiry counting from when they lost their connection.
   */
  installSessions(stored: readonly RestoredSession[], lastMessageId = 0): void {
    const restored: Array<[Session, RestoredSession]> = []
    for (const record of stored) {
      const session = Session.restore(record, this.sessionLimits, this.store)
      session.refusesBridged = this.refusingBridged.has(session.clientId)
      this.sessions.set(session.clientId, session)
      for (const sub of session.subscriptions.values()) this.route(session, sub.topicFilter, sub)
      restored.push([session, record])
    }
    // After every subscription is routed, so a delivery finds the shared subscription it came through.
    const groups = (name: string): SharedGroup<RoutedMessage> | undefined => this.sharedGroups.get(name)
    const now = Date.now()
    for (const [session, record] of restored) {
      for (const d of record.deliveries) if (d.messageId > lastMessageId) lastMessageId = d.messageId
      session.restoreDeliveries(record.deliveries, groups)
      session.disconnectedAt = record.disconnectedAt ?? now
      if (record.disconnectedAt === undefined) {
        // Its connection was open when the last run stopped: it is without one since now.
        this.store.updated(session, now)
      }
    }
    // A cluster node numbers messages in its own range (messageIdsFrom).
    if (this.cluster === undefined) this.store.restoredMessageIds(lastMessageId)
    if (restored.length > 0) log.broker('Restored %d persistent sessions', restored.length)
    for (const [session, record] of restored) {
      if (record.will !== undefined) this.wills.restored(offlineClient(session.clientId), session, record.will.message, record.will.publishAt)
      // The expiry counts from when the session lost its connection, across restarts.
      this.scheduleExpiry(session, (record.disconnectedAt ?? now) + session.expiryInterval * 1000)
    }
  }

  /**
   * Whether the session of `clientId` (the one in memory, and any made later in this process)
   * refuses bridged messages (`Session.refusesBridged`): an outgoing bridge's `forwardBridged: false`.
   */
  refuseBridged(clientId: string, refuse: boolean): void {
    if (refuse) this.refusingBridged.add(clientId)
    else this.refusingBridged.delete(clientId)
    const session = this.sessions.get(clientId)
    if (session !== undefined) session.refusesBridged = refuse
  }

  hasSession(clientId: string): boolean {
    return this.sessions.has(clientId)
  }

  sessionIds(): Iterable<string> {
    return this.sessions.keys()
  }

  /**
   * Another cluster node took the client over: its connection here closes (MQTT 5: DISCONNECT
   * 0x8E), and its session leaves memory but not the store, where the new owner reads it.
   */
  releaseSession(clientId: string): void {
    this.clients.get(clientId)?.end('taken-over')
    // A connection still waiting for its CONNACK goes too: the newer claim won.
    this.latestConnect.get(clientId)?.end('taken-over')
    const session = this.sessions.get(clientId)
    if (session === undefined || session.link !== null) return
    this.forget(session)
  }

  /** Drops a session from memory without telling the store. */
  private forget(session: Session): void {
    this.wills.forget(session)
    for (const filter of session.subscriptions.keys()) this.unroute(session, filter)
    this.sessions.delete(session.clientId)
    this.cancelExpiry(session)
    session.log = null
    session.clusterRecord = false
    session.clear()
  }

  deliverRemote(stored: StoredMessage, share: string | undefined, only?: ReadonlySet<string>): void {
    const message = RoutedMessage.from(stored)
    message.fromCluster = true
    if (share !== undefined) {
      const group = this.sharedGroups.get(share)
      if (group instanceof ClusterSharedGroup) {
        group.deliverPicked(message)
        return
      }
      // Its members here left meanwhile: another node with members gets it.
      const cluster = this.cluster as ClusterNode
      const to = cluster.pickShared(share, false, cluster.nodeId)
      if (to !== undefined) cluster.forwardShared(stored, share, to)
      return
    }
    if (only === undefined) {
      this.router.route(message, null)
      return
    }
    for (const clientId of only) {
      const session = this.sessions.get(clientId)
      if (session !== undefined) deliverMatching(session, message)
    }
  }

  retainedChanged(topic: string, message: StoredMessage | null): void {
    this.retained.changedElsewhere(topic, message)
  }

  /**
   * Drops every client (MQTT 5: DISCONNECT 0x88, server unavailable) and forgets every session,
   * touching neither wills nor the store, as a crash of this node would: the node that takes
   * the sessions (another, or this one again from the store) publishes the wills that are due.
   */
  forgetSessions(): void {
    this.dropping = true
    try {
      for (const connection of [...this.connections]) connection.end('closed-by-host', ReasonCode.ServerUnavailable)
    } finally {
      this.dropping = false
    }
    for (const session of [...this.sessions.values()]) this.forget(session)
  }

  messageIdBlock(first: number, size: number, more: () => void): void {
    this.store.messageIdBlock(first, size, more)
  }

  assignClientId(): string {
    return this.clientIdPrefix + (++this.clientIdCounter).toString(36)
  }

  connectStarted(connection: Connection): void {
    this.latestConnect.set(connection.id, connection)
  }

  isLatestConnect(connection: Connection): boolean {
    return this.latestConnect.get(connection.id) === connection
  }

  clientAccepted(connection: Connection): void {
    this.latestConnect.delete(connection.id)
    this.clients.set(connection.id, connection)
    if (this.clients.size > this.counters.maxConnected) this.counters.maxConnected = this.clients.size
    const session = this.sessions.get(connection.id)
    if (session !== undefined) {
      session.username = connection.username
      session.identified = true
    }
  }

  openSession(clientId: string, cleanStart: boolean, persistent: boolean, expiryInterval: number): { session: Session; present: boolean } {
    const existing = this.sessions.get(clientId)
    if (existing !== undefined) {
      // [MQTT-3.1.2-6] clean session discards the previous session; [MQTT-3.1.2-4] otherwise it resumes
      if (!cleanStart && existing.persistent) {
        this.cancelExpiry(existing)
        existing.expiryInterval = expiryInterval
        existing.disconnectedAt = undefined
        if (persistent) {
          this.store.updated(existing)
        } else {
          // The session now ends with this connection: its stored record goes now.
          this.store.deleted(clientId)
          existing.log = null
          existing.persistent = false
          this.recordInCluster(existing)
        }
        return { session: existing, present: true }
      }
      this.endSession(existing)
    }
    const session = new Session(clientId, persistent, this.sessionLimits)
    session.expiryInterval = expiryInterval
    session.refusesBridged = this.refusingBridged.has(clientId)
    if (persistent) {
      session.log = this.store
      this.store.created(session)
    } else {
      this.recordInCluster(session)
    }
    this.sessions.set(clientId, session)
    return { session, present: false }
  }

  /**
   * In a cluster every session has a stored record, persistent or not: its owner is known, and
   * its will survives the node (the node that adopts a dead node's sessions publishes it).
   */
  private recordInCluster(session: Session): void {
    if (this.cluster === undefined) return
    session.clusterRecord = true
    this.store.created(session)
  }

  /** Ends a persistent session once it has been without a connection for its expiry interval. */
  private scheduleExpiry(session: Session, due: number): void {
    this.cancelExpiry(session)
    if (session.expiryInterval >= NEVER_EXPIRES || this.timersStopped) return
    const arm = (): void => {
      const left = due - Date.now()
      if (left > 0) {
        // setTimeout takes at most about 24.8 days; longer intervals re-arm.
        session.expiryTimer = setTimeout(arm, Math.min(left, MAX_TIMEOUT_MS))
        session.expiryTimer.unref()
        this.expiring.add(session)
        return
      }
      this.cancelExpiry(session)
      if (session.link === null && this.sessions.get(session.clientId) === session) {
        log.client('Session of %s expired', session.clientId)
        this.counters.sessionsExpired++
        this.endSession(session)
      }
    }
    arm()
  }

  private cancelExpiry(session: Session): void {
    if (session.expiryTimer !== undefined) clearTimeout(session.expiryTimer)
    session.expiryTimer = undefined
    this.expiring.delete(session)
  }

  endSession(session: Session): void {
    // A delayed will still pending is due now: the session ends first [MQTT-3.1.3-9].
    this.wills.sessionEnds(session)
    for (const filter of session.subscriptions.keys()) this.unroute(session, filter)
    // QoS 1/2 messages a shared subscription gave this session, not yet received, go to another member.
    for (const { message, group } of session.takeShared()) group.deliverExcept(message, session)
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId)
    if (session.log !== null || session.clusterRecord) this.store.deleted(session.clientId)
    session.log = null
    session.clusterRecord = false
    this.cancelExpiry(session)
    session.clear()
  }

  /**
   * A session opened for a connection that never got its CONNACK (it closed, or the store failed
   * while the broker waited for it): left as if that connection had come and gone, without a will.
   */
  sessionAbandoned(session: Session, connection: Connection): void {
    // A newer connection that opened the session since is its owner now.
    if (session.claimant !== connection) return
    session.claimant = null
    if (this.sessions.get(session.clientId) !== session || session.link !== null) return
    this.wills.abandoned(session)
    if (!session.persistent || session.expiryInterval === 0) this.endSession(session)
    else this.sessionOffline(session)
  }

  /** A persistent session lost its connection: stored as offline since now, its expiry starts. */
  private sessionOffline(session: Session): void {
    const now = Date.now()
    session.disconnectedAt = now
    this.store.updated(session, now)
    this.scheduleExpiry(session, now + session.expiryInterval * 1000)
  }

  deletionPending(clientId: string): boolean {
    return this.store.deletionPending(clientId)
  }

  /** An incoming QoS 2 PUBLISH was accepted: its identifier is held until PUBREL [MQTT-4.3.3-2]. */
  qos2Received(session: Session, packetId: number): void {
    session.incomingQos2.add(packetId)
    if (session.log !== null) this.store.qos2Received(session, packetId)
  }

  /** PUBREL released an incoming QoS 2 identifier; false if it was not held. */
  qos2Released(session: Session, packetId: number): boolean {
    if (!session.incomingQos2.delete(packetId)) return false
    if (session.log !== null) this.store.qos2Released(session, packetId)
    return true
  }

  /** Waits for everything recorded to be committed (shutdown; the broker stops its timers first). */
  async settle(): Promise<void> {
    await this.journal.settle()
  }

  /**
   * A store that is not durable heard nothing of deliveries while the broker ran: it gets each
   * persistent session whole now (shutdown, once the connections are closed, before the timers stop).
   */
  checkpoint(): void {
    if (this.journal.durable) return
    for (const session of this.sessions.values()) if (session.log !== null) this.store.checkpoint(session)
  }

  /** Stops the timers of sessions and wills: the store keeps them for the next broker on it. */
  stopTimers(): void {
    this.timersStopped = true
    for (const session of [...this.expiring]) this.cancelExpiry(session)
    this.wills.close()
  }

  publish(message: RoutedMessage, from: Client, session: Session | null): number {
    if (message.retain) this.retained.store(message)
    if (this.publishListened) this.emit('publish', message, from)
    // To the other nodes with matching subscriptions, in the batch that acknowledges it.
    this.cluster?.forward(message)
    // The publisher's own session, for No Local. A message from another broker (published by an
    // incoming bridge, or by an outgoing bridge's local client: what came in) is routed as bridged,
    // for the bridges with forwardBridged false; two field reads here, nothing more when it is not.
    return this.router.route(message, session, from.bridge || from.transport === 'bridge')
  }

  /**
   * One of the broker's own $SYS messages: its retained copy is kept in memory only (it describes
   * this process), and it reaches this node's subscribers only (in a cluster each node has its
   * own tree). A persistent session queues it like any message.
   */
  publishSys(topic: string, payload: string): void {
    const qos = (this.capabilities.maximumQoS < 2 ? this.capabilities.maximumQoS : 2) as QoS
    const message = new RoutedMessage(topic, Buffer.from(payload), qos, this.capabilities.retainAvailable)
    message.nodeLocal = true
    if (message.retain) this.retained.keepInMemory(message)
    this.router.route(message, null)
  }

  /** A message from the host (`broker.publish`): routed; resolves once what it changed is stored. */
  publishFromHost(message: RoutedMessage): { matched: number; stored: Promise<void> | undefined } {
    const mark = this.journal.recorded
    if (message.retain) this.retained.store(message)
    if (this.publishListened) this.emit('publish', message, null)
    this.cluster?.forward(message)
    const matched = this.router.route(message, null)
    if (this.journal.recorded === mark || !this.journal.durable) return { matched, stored: undefined }
    const stored = new Promise<void>((resolve, reject) => {
      this.journal.afterCommit((ok) => (ok ? resolve() : reject(new Error('persistence: the store failed to keep the message'))))
    })
    return { matched, stored }
  }

  subscribe(session: Session, subscription: Subscription): void {
    if (this.cluster !== undefined && session.log === null && session.clusterRecord && parseSharedFilter(subscription.topicFilter) !== null) {
      // A cluster stores the deliveries of a shared subscription's member even when its session
      // is not persistent: if its node dies, the node that adopts its sessions hands the
      // messages it held unacknowledged to another member.
      session.log = this.store
      for (const sub of session.subscriptions.values()) this.store.subscribed(session, sub)
    }
    session.subscriptions.set(subscription.topicFilter, subscription)
    this.route(session, subscription.topicFilter, subscription)
    if (session.log !== null) this.store.subscribed(session, subscription)
  }

  unsubscribe(session: Session, topicFilter: string): boolean {
    if (!session.subscriptions.delete(topicFilter)) return false
    this.unroute(session, topicFilter)
    if (session.log !== null) this.store.unsubscribed(session, topicFilter)
    return true
  }

  /** Subscribes the host's in-process subscriber (`broker.subscribe`), possibly to a shared group. */
  subscribeLocal(topicFilter: string, subscriber: LocalSubscriber): void {
    this.route(subscriber, topicFilter, { topicFilter, qos: 2 })
  }

  unsubscribeLocal(topicFilter: string, subscriber: LocalSubscriber): void {
    this.unroute(subscriber, topicFilter)
  }

  /** Delivers the retained messages matching `topicFilter` to an in-process subscriber. */
  sendRetainedLocal(topicFilter: string, subscriber: LocalSubscriber): void {
    for (const stored of this.retained.match(topicFilter)) subscriber.deliver(RoutedMessage.from(stored))
  }

  /** Puts a subscription in the trie, directly or through its shared group. */
  private route(subscriber: RouteTarget, topicFilter: string, options: Subscription): void {
    this.cluster?.routes.add(topicFilter)
    const shared = parseSharedFilter(topicFilter)
    if (shared === null) {
      this.router.subscribe(topicFilter, subscriber, options)
      return
    }
    let group = this.sharedGroups.get(topicFilter)
    if (group === undefined) {
      group = this.cluster === undefined ? new SharedGroup<RoutedMessage>(shared.shareName, shared.filter) : new ClusterSharedGroup(shared.shareName, shared.filter, this.cluster)
      this.sharedGroups.set(topicFilter, group)
      // The group takes every QoS; each member gets the message at its own granted QoS.
      this.router.subscribe(shared.filter, group, { qos: 2 })
    }
    group.join(subscriber, options)
  }

  private unroute(subscriber: RouteTarget, topicFilter: string): void {
    this.cluster?.routes.remove(topicFilter)
    const group = this.sharedGroups.get(topicFilter)
    if (group === undefined) {
      this.router.unsubscribe(topicFilter, subscriber)
      return
    }
    group.leave(subscriber)
    if (group.size === 0) {
      this.sharedGroups.delete(topicFilter)
      this.router.unsubscribe(group.filter, group)
    }
  }

  /** Sends the retained messages matching a new subscription, under flow control; returns how many went at once. */
  sendRetained(session: Session, subscription: Subscription): number {
    return session.sendRetained(this.retained.match(subscription.topicFilter), subscription)
  }

  /**
   * Asks `authorizeDeliver` whether a session's client may receive a message. A hook that throws
   * refuses (and is reported on `hostError`): a broken ACL must not leak messages.
   */
  private mayDeliver(hook: AuthorizeDeliverHook, session: Session, message: RoutedMessage): boolean {
    const client: Client = (session.link as Connection | null) ?? offlineClient(session.clientId, session.username)
    let allowed: boolean
    try {
      allowed = hook(client, message) === true
    } catch (error) {
      log.error('The authorizeDeliver hook failed for %s: %O', session.clientId, error)
      this.emit('hostError', error instanceof Error ? error : new Error(String(error)), { kind: 'hook', hook: 'authorizeDeliver', clientId: session.clientId })
      allowed = false
    }
    if (!allowed) {
      this.counters.denied.deliver++
      this.counters.drop('not_authorized')
      if (log.auth.enabled) log.auth('authorizeDeliver refused %j to %s', message.topic, session.clientId)
    }
    return allowed
  }

  /** A snapshot for `broker.stats()`. */
  stats(health: BrokerHealth, bridges: StatsSource['bridges'] = []): BrokerStats {
    return collectStats(
      {
        counters: this.counters,
        startedAt: this.startedAt,
        nodeId: this.cluster?.nodeId,
        sessions: this.sessions,
        connections: this.connections,
        connectionCount: this.connections.size,
        connectedCount: this.clients.size,
        retainedCount: this.retained.size,
        bridges,
      },
      health,
    )
  }

  /** Stops the event-loop monitor (shutdown). */
  stopMonitors(): void {
    this.eventLoop.stop()
  }

  /** Liveness and readiness; `serving`: listening, restored, not closed. */
  health(serving: boolean): BrokerHealth {
    const eventLoopDelayMs = this.eventLoop.delayMs()
    return { alive: eventLoopDelayMs < STALLED_MS, ready: serving && !this.draining, draining: this.draining, eventLoopDelayMs }
  }

  /** Bans, and disconnects the connected clients the ban matches (MQTT 5: DISCONNECT 0x98 administrative action). */
  ban(ban: Ban): void {
    this.protection.ban(ban)
    if (ban.until !== undefined && ban.until <= Date.now()) return
    // Connections still in their CONNECT handshake too: one waiting for an async authenticate
    // would otherwise get in after the ban.
    for (const connection of [...this.connections]) {
      const known = connection.state !== 'awaiting-connect'
      const byId = known && ban.clientId !== undefined && ban.clientId === connection.id
      const byName = known && ban.username !== undefined && ban.username === connection.username
      const byAddress = ban.address !== undefined && connection.remoteAddress !== undefined && this.protection.addressBanned(connection.remoteAddress)
      if (byId || byName || byAddress) {
        log.client('Disconnecting %s (%s): banned', connection.id || 'a client', connection.peer)
        connection.end('closed-by-host', ReasonCode.AdministrativeAction, 'banned')
      }
    }
  }

  /**
   * A connection about to be drained takes no new QoS 1/2 message into its window: they queue (a
   * persistent session keeps them for its next connection), so what is in flight only shrinks.
   */
  quiesce(connection: Connection): void {
    if (connection.session !== null) connection.session.inflightLimit = 0
  }

  /**
   * Resolves once a connection has no QoS 1/2 exchange open with the broker (messages sent and not
   * acknowledged, QoS 2 messages received and not released), or at `deadline` (ms since the
   * epoch), or when it closes. Checked every 50 ms: only drain() waits on it.
   */
  async settled(connection: Connection, deadline: number): Promise<void> {
    const open = (): boolean => {
      const session = connection.session
      return connection.connected && session !== null && (session.inflightCount > 0 || session.incomingQos2Count > 0)
    }
    while (open() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))).unref())
  }

  /** At accept: bans and per-IP limits, then the host's `acceptConnection`; false closes the socket. */
  admit(request: AcceptRequest, socket: { once(event: 'close', listener: () => void): unknown }): boolean {
    const refusal = this.protection.admit(request, socket)
    if (refusal !== null) {
      log.client('Refusing a %s connection from %s at accept: %s', request.transport, request.remoteAddress ?? 'unknown', refusal.replace(/_/g, ' '))
      return false
    }
    const hook = this.acceptConnection
    if (hook === undefined) return true
    let allowed: boolean
    try {
      allowed = hook(request) === true
    } catch (error) {
      log.error('The acceptConnection hook failed: %O', error)
      this.emit('hostError', error instanceof Error ? error : new Error(String(error)), { kind: 'hook', hook: 'acceptConnection', clientId: '' })
      allowed = false
    }
    if (!allowed) {
      this.counters.socketsRefused.host++
      log.client('Refusing a %s connection from %s at accept: acceptConnection said no', request.transport, request.remoteAddress ?? 'unknown')
    }
    return allowed
  }

  get openConnections(): number {
    return this.connections.size
  }

  /** Starts serving a client on any Duplex stream. */
  handle(stream: Duplex, info: ConnectionInfo): Connection | null {
    // Sockets still in the CONNECT handshake count too; a little headroom past maxConnections
    // lets the broker answer with a CONNACK refusal rather than drop connections without a word.
    if (this.connections.size >= this.limits.maxConnections + HANDSHAKE_HEADROOM) {
      log.client('Refusing a %s connection from %s: %d connections open', info.transport ?? 'stream', info.remoteAddress ?? 'unknown', this.connections.size)
      this.counters.socketsRefused.max_connections++
      stream.destroy()
      return null
    }
    const connection = new Connection(this, stream, info)
    this.connections.add(connection)
    this.counters.socketsAccepted++
    return connection
  }

  connectionClosed(connection: Connection, session: Session | null, reason: DisconnectReason, will: WillMessage | undefined): void {
    this.connections.delete(connection)
    if (this.latestConnect.get(connection.id) === connection) this.latestConnect.delete(connection.id)
    if (session === null) return
    this.counters.disconnect(reason)
    const flapped = this.protection.clientEnded(connection.id, reason)
    if (flapped !== undefined) log.client('Banning client %s for %d s: it connected and dropped too often', connection.id, Math.round(((flapped.until ?? Date.now()) - Date.now()) / 1000))
    if (this.clients.get(connection.id) === connection) this.clients.delete(connection.id)
    const client: Client = connection
    const sessionEnds = !session.persistent || session.expiryInterval === 0
    if (this.dropping) {
      if (session.link === connection) session.detach()
    } else if (session.link === connection) {
      // [MQTT-3.1.2-8] the will is published when the connection ends without DISCONNECT
      // (A DISCONNECT has cleared the will already, unless an MQTT 5 client asked for it with 0x04.)
      if (will !== undefined) this.wills.due(client, session, will, sessionEnds)
      else if (session.will !== undefined) this.wills.discarded(session)
      session.detach()
      if (sessionEnds) this.endSession(session)
      else this.sessionOffline(session)
    }
    this.emit('clientDisconnect', client, reason)
  }
}

/** Delivers a message to one session if any of its (non-shared) subscriptions matches, as the router would. */
function deliverMatching(session: Session, message: RoutedMessage): void {
  let qos: QoS | -1 = -1
  let ids: number[] | undefined
  let retainAsPublished = false
  for (const sub of session.subscriptions.values()) {
    if (parseSharedFilter(sub.topicFilter) !== null || !topicMatches(sub.topicFilter, message.topic)) continue
    if (sub.qos > qos) qos = sub.qos
    if (sub.subscriptionIdentifier !== undefined) (ids ??= []).push(sub.subscriptionIdentifier)
    if (sub.retainAsPublished === true) retainAsPublished = true
  }
  if (qos === -1) return
  session.deliver(message, qos < message.qos ? qos : message.qos, retainAsPublished && message.retain, ids)
}
