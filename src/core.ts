import { randomBytes } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { Connection, type ConnectionInfo } from './connection/connection.js'
import type { BrokerContext } from './connection/context.js'
import type { BrokerEvents } from './hooks/events.js'
import type { Client, ClientSummary, DisconnectReason } from './hooks/types.js'
import { asError } from './hooks/errors.js'
import { isPromise } from './hooks/promise.js'
import { log } from './logging.js'
import { DEFAULT_CAPABILITIES, DEFAULT_LIMITS, type BrokerOptions, type Capabilities, type Limits } from './options.js'
import type { Awaitable, PersistenceAdapter, StoredMessage } from './persistence/adapter.js'
import { MemoryPersistence } from './persistence/memory.js'
import type { Subscription, WillMessage } from './protocol/packets.js'
import { Router, type Subscriber } from './routing/router.js'
import { parseSharedFilter, SharedGroup, type SharedMember } from './routing/shared-group.js'
import { LocalSubscriber } from './session/local-subscriber.js'
import { isExpired, RoutedMessage } from './session/routed-message.js'
import { Session } from './session/session.js'

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
function offlineClient(id: string): Client {
  const summary: ClientSummary = {
    id,
    username: undefined,
    remoteAddress: undefined,
    remotePort: undefined,
    transport: 'stream',
    certificate: undefined,
    protocolVersion: 4,
    cleanSession: false,
    keepAlive: 0,
    connected: false,
  }
  return { ...summary, request: undefined, close: () => {}, toJSON: () => summary }
}

/** What can be routed to: a client's session or an in-process subscriber, alone or in a shared group. */
type RouteTarget = Subscriber<RoutedMessage> & SharedMember<RoutedMessage>

type Emit = <E extends keyof BrokerEvents>(event: E, ...args: Parameters<BrokerEvents[E]>) => void

/**
 * The broker's shared state and the operations connections call: sessions, routing, retained
 * messages, persistence. The public `Broker` wraps it; connections see it as `BrokerContext`.
 */
export class BrokerCore implements BrokerContext {
  readonly limits: Readonly<Limits>
  readonly capabilities: Readonly<Capabilities>
  readonly authenticate
  readonly enhancedAuthenticate
  readonly authorizePublish
  readonly authorizeSubscribe
  readonly persistence: PersistenceAdapter
  readonly router = new Router<RoutedMessage>()
  readonly sessions = new Map<string, Session>()
  /** Shared subscriptions by their full '$share/{ShareName}/{filter}'. */
  private readonly sharedGroups = new Map<string, SharedGroup<RoutedMessage>>()
  /** Every open network connection, connected or still in the CONNECT handshake. */
  readonly connections = new Set<Connection>()
  /** Connected clients (past CONNACK) by client identifier. */
  readonly clients = new Map<string, Connection>()
  private readonly dirty = new Set<Session>()
  private flushScheduled = false
  private pendingWrites = new Set<Promise<void>>()
  private clientIdCounter = 0
  /** The connection whose CONNECT for a client identifier arrived last, while it is being decided. */
  private readonly latestConnect = new Map<string, Connection>()
  private readonly clientIdPrefix = `culex-${randomBytes(4).toString('hex')}-`

  constructor(
    options: BrokerOptions,
    readonly emit: Emit,
    /** Whether an event has listeners: per-message events are skipped (no argument arrays) when not. */
    private readonly listens: (event: keyof BrokerEvents) => boolean,
  ) {
    this.limits = validateLimits({ ...DEFAULT_LIMITS, ...options.limits })
    this.capabilities = Object.freeze({ ...DEFAULT_CAPABILITIES, ...options.capabilities })
    this.authenticate = options.authenticate
    this.enhancedAuthenticate = options.enhancedAuthenticate
    this.authorizePublish = options.authorizePublish
    this.authorizeSubscribe = options.authorizeSubscribe
    this.persistence = options.persistence ?? new MemoryPersistence()
  }

  /** Restores persistent sessions saved by an earlier run. */
  async restore(): Promise<void> {
    const records = await this.persistence.loadSessions()
    for (const record of records) {
      const session = Session.fromRecord(record, this.limits)
      session.onChange = this.markDirty
      this.sessions.set(session.clientId, session)
      for (const sub of session.subscriptions.values()) this.route(session, sub.topicFilter, sub)
      // Offline since the previous run: its expiry counts from now, the earliest the broker knows.
      this.scheduleExpiry(session)
    }
    if (records.length > 0) log.broker('Restored %d persistent sessions', records.length)
    // A will still stored belongs to a connection the previous run never saw close: it ended
    // without DISCONNECT, so the will is due now [MQTT-3.1.2-8].
    for (const session of this.sessions.values()) {
      const will = session.will
      if (will === undefined) continue
      session.will = undefined
      this.sessionChanged(session)
      this.publishWill(offlineClient(session.clientId), will, session)
    }
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
  }

  openSession(clientId: string, cleanStart: boolean, persistent: boolean, expiryInterval: number): { session: Session; present: boolean } {
    const existing = this.sessions.get(clientId)
    if (existing !== undefined) {
      // [MQTT-3.1.2-6] clean session discards the previous session; [MQTT-3.1.2-4] otherwise it resumes
      if (!cleanStart && existing.persistent) {
        this.cancelExpiry(existing)
        // [MQTT-3.1.3-9] reconnecting before the Will Delay Interval has passed cancels the will
        if (existing.pendingWill !== undefined) {
          clearTimeout(existing.pendingWill.timer)
          existing.pendingWill = undefined
        }
        if (!persistent) {
          // The session now ends with this connection: its stored record goes now.
          this.dirty.delete(existing)
          this.track('deleteSession', () => this.persistence.deleteSession(clientId))
          existing.onChange = null
        }
        existing.persistent = persistent
        existing.expiryInterval = expiryInterval
        return { session: existing, present: true }
      }
      this.endSession(existing)
    }
    const session = new Session(clientId, persistent, this.limits)
    session.expiryInterval = expiryInterval
    if (session.persistent) session.onChange = this.markDirty
    this.sessions.set(clientId, session)
    return { session, present: false }
  }

  /** Ends a persistent session once it has been without a connection for its expiry interval. */
  private scheduleExpiry(session: Session): void {
    this.cancelExpiry(session)
    if (session.expiryInterval >= NEVER_EXPIRES) return
    const due = Date.now() + session.expiryInterval * 1000
    const arm = (): void => {
      const left = due - Date.now()
      if (left > 0) {
        // setTimeout takes at most about 24.8 days; longer intervals re-arm.
        session.expiryTimer = setTimeout(arm, Math.min(left, MAX_TIMEOUT_MS))
        session.expiryTimer.unref()
        return
      }
      session.expiryTimer = undefined
      if (session.link === null && this.sessions.get(session.clientId) === session) {
        log.client('Session of %s expired', session.clientId)
        this.endSession(session)
      }
    }
    arm()
  }

  private cancelExpiry(session: Session): void {
    if (session.expiryTimer !== undefined) clearTimeout(session.expiryTimer)
    session.expiryTimer = undefined
  }

  endSession(session: Session): void {
    // A delayed will still pending is due now: the session ends first [MQTT-3.1.3-9].
    const pending = session.pendingWill
    if (pending !== undefined) {
      clearTimeout(pending.timer)
      session.pendingWill = undefined
      pending.fire()
    }
    for (const filter of session.subscriptions.keys()) this.unroute(session, filter)
    // QoS 1/2 messages a shared subscription gave this session, not yet received, go to another member.
    for (const { message, group } of session.takeShared()) group.deliverExcept(message, session)
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId)
    if (session.persistent) {
      this.dirty.delete(session)
      this.track('deleteSession', () => this.persistence.deleteSession(session.clientId))
    }
    session.onChange = null
    this.cancelExpiry(session)
    session.clear()
  }

  private readonly markDirty = (session: Session): void => this.sessionChanged(session)

  sessionChanged(session: Session): void {
    if (!session.persistent || this.sessions.get(session.clientId) !== session) return
    this.dirty.add(session)
    if (!this.flushScheduled) {
      this.flushScheduled = true
      // One save per session per event-loop turn, however many messages it saw.
      setImmediate(() => this.flushSessions())
    }
  }

  flushSessions(): void {
    this.flushScheduled = false
    for (const session of this.dirty) this.track('saveSession', () => this.persistence.saveSession(session.toRecord()))
    this.dirty.clear()
  }

  /**
   * Flushes dirty sessions and waits for the persistence writes under way now; with
   * `everything`, also for any they lead to, until none is left (shutdown).
   */
  async settle(everything = false): Promise<void> {
    this.flushSessions()
    if (!everything) {
      await Promise.allSettled([...this.pendingWrites])
      return
    }
    while (this.pendingWrites.size > 0) await Promise.allSettled([...this.pendingWrites])
  }

  /**
   * Calls the adapter without letting it hurt the broker: a throw or a rejection is logged (a
   * connection's close handler or a timer must never throw into the host), and close() can wait
   * for writes still under way.
   */
  private track(what: string, call: () => Awaitable<void>): Promise<void> | undefined {
    let result: Awaitable<void>
    try {
      result = call()
    } catch (error) {
      log.error('persistence %s failed: %O', what, error)
      return undefined
    }
    if (!isPromise(result)) return undefined
    const p = result.then(
      () => {},
      (error: unknown) => log.error('persistence %s failed: %O', what, error),
    )
    this.pendingWrites.add(p)
    void p.finally(() => this.pendingWrites.delete(p))
    return p
  }

  publish(message: RoutedMessage, from: Client, session: Session | null): number {
    if (message.retain) this.storeRetained(message)
    if (this.listens('publish')) this.emit('publish', message, from)
    // The publisher's own session, for No Local
    return this.router.route(message, session)
  }

  /** A message from the host (`broker.publish`): routed, and its own retained write to wait for. */
  publishFromHost(message: RoutedMessage): { matched: number; stored: Promise<void> | undefined } {
    const stored = message.retain ? this.storeRetained(message) : undefined
    if (this.listens('publish')) this.emit('publish', message, null)
    return { matched: this.router.route(message, null), stored }
  }

  /** Stores (or, with an empty payload, deletes) a retained message; returns the adapter's pending write, if any. */
  private storeRetained(message: RoutedMessage): Promise<void> | undefined {
    message.ownPayload()
    // [MQTT-3.3.1-5] the broker keeps the last retained message per topic; [MQTT-3.3.1-10] empty payload deletes it
    // A plain copy: the adapter must not keep the message's cached encodings alive.
    const stored = message.toStored()
    return this.track('storeRetained', () => this.persistence.storeRetained(stored))
  }

  subscribe(session: Session, subscription: Subscription): void {
    session.subscriptions.set(subscription.topicFilter, subscription)
    this.route(session, subscription.topicFilter, subscription)
  }

  unsubscribe(session: Session, topicFilter: string): boolean {
    if (!session.subscriptions.delete(topicFilter)) return false
    this.unroute(session, topicFilter)
    this.sessionChanged(session)
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
  async sendRetainedLocal(topicFilter: string, subscriber: LocalSubscriber): Promise<void> {
    const now = Date.now()
    for (const stored of await this.persistence.matchRetained(topicFilter)) {
      if (!isExpired(stored, now)) subscriber.deliver(RoutedMessage.from(stored))
    }
  }

  /** Puts a subscription in the trie, directly or through its shared group. */
  private route(subscriber: RouteTarget, topicFilter: string, options: Subscription): void {
    const shared = parseSharedFilter(topicFilter)
    if (shared === null) {
      this.router.subscribe(topicFilter, subscriber, options)
      return
    }
    let group = this.sharedGroups.get(topicFilter)
    if (group === undefined) {
      group = new SharedGroup<RoutedMessage>(shared.shareName, shared.filter)
      this.sharedGroups.set(topicFilter, group)
      // The group takes every QoS; each member gets the message at its own granted QoS.
      this.router.subscribe(shared.filter, group, { qos: 2 })
    }
    group.join(subscriber, options)
  }

  private unroute(subscriber: RouteTarget, topicFilter: string): void {
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

  sendRetained(session: Session, subscription: Subscription): number {
    let found: Awaitable<StoredMessage[]>
    try {
      found = this.persistence.matchRetained(subscription.topicFilter)
    } catch (error) {
      log.error('persistence matchRetained failed: %O', error)
      return 0
    }
    if (!isPromise(found)) return session.sendRetained(this.unexpired(found), subscription)
    found.then(
      (messages) => {
        // Still the same session and subscription: an answer that arrives after UNSUBSCRIBE, a
        // replacing SUBSCRIBE or the session's end is not for anybody any more.
        if (this.sessions.get(session.clientId) !== session || session.subscriptions.get(subscription.topicFilter) !== subscription) return
        session.sendRetained(this.unexpired(messages), subscription)
      },
      (error: unknown) => log.error('persistence matchRetained failed: %O', error),
    )
    return 0
  }

  /** The retained messages that have not expired; expired ones leave storage [MQTT-3.3.2-5]. */
  private unexpired(messages: StoredMessage[]): StoredMessage[] {
    const now = Date.now()
    const live: StoredMessage[] = []
    for (const stored of messages) {
      if (!isExpired(stored, now)) {
        live.push(stored)
        continue
      }
      const gone: StoredMessage = { ...stored, payload: Buffer.alloc(0) }
      this.track('storeRetained', () => this.persistence.storeRetained(gone))
    }
    return live
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
      stream.destroy()
      return null
    }
    const connection = new Connection(this, stream, info)
    this.connections.add(connection)
    return connection
  }

  connectionClosed(connection: Connection, session: Session | null, reason: DisconnectReason, will: WillMessage | undefined): void {
    this.connections.delete(connection)
    if (this.latestConnect.get(connection.id) === connection) this.latestConnect.delete(connection.id)
    if (session === null) return
    if (this.clients.get(connection.id) === connection) this.clients.delete(connection.id)
    const client: Client = connection
    if (session.link === connection) session.detach()
    // [MQTT-3.1.2-8] the will is published when the connection ends without DISCONNECT
    // (A DISCONNECT has cleared the will already, unless an MQTT 5 client asked for it with 0x04.)
    if (will !== undefined) this.willDue(client, session, will)
    if (!session.persistent || session.expiryInterval === 0) {
      this.endSession(session)
    } else {
      this.sessionChanged(session)
      this.scheduleExpiry(session)
    }
    this.emit('clientDisconnect', client, reason)
  }

  /**
   * The will is due: now, or after its MQTT 5 Will Delay Interval, or when the session ends,
   * whichever comes first; a reconnect in time cancels it [MQTT-3.1.3-9].
   */
  private willDue(client: Client, session: Session, will: WillMessage): void {
    const delay = will.properties?.willDelayInterval ?? 0
    const sessionEnds = !session.persistent || session.expiryInterval === 0
    if (delay === 0 || sessionEnds) {
      this.publishWill(client, will, session)
      return
    }
    const seconds = Math.min(delay, session.expiryInterval)
    const timer = setTimeout(() => {
      session.pendingWill = undefined
      this.publishWill(client, will, session)
    }, Math.min(seconds * 1000, MAX_TIMEOUT_MS))
    timer.unref()
    session.pendingWill = { timer, fire: () => this.publishWill(client, will, session) }
  }

  private publishWill(client: Client, will: WillMessage, session: Session): void {
    const message = new RoutedMessage(will.topic, will.payload, will.qos, will.retain)
    if (will.properties) {
      // Will properties travel with the message, all but the delay, which was for the broker alone.
      const { willDelayInterval: _delay, ...forwarded } = will.properties
      if (Object.keys(forwarded).length > 0) message.properties = forwarded
    }
    const send = (answer: boolean | number): void => {
      if (answer !== true && answer !== 0) {
        log.auth('authorizePublish refused the will of %s on %j', client.id, will.topic)
        return
      }
      log.client('Publishing the will of %s on %j', client.id, will.topic)
      this.publish(message, client, session)
      this.emit('willPublish', message, client)
    }
    const authorize = this.authorizePublish
    if (authorize === undefined) return send(true)
    let allowed: boolean | number | Promise<boolean | number>
    try {
      allowed = authorize(client, message)
    } catch (error) {
      this.willHookFailed(client, error)
      return
    }
    if (isPromise(allowed)) {
      allowed.then(send, (error: unknown) => this.willHookFailed(client, error))
    } else {
      send(allowed)
    }
  }

  /** The host's authorizePublish failed on a will: the will is not published, the host is told. */
  private willHookFailed(client: Client, error: unknown): void {
    log.error('authorizePublish failed for the will of %s: %O', client.id, error)
    this.emit('hostError', asError(error), { kind: 'hook', hook: 'authorizePublish', clientId: client.id })
  }
}
