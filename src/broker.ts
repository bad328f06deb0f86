import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import { BrokerCore } from './core.js'
import { asError } from './hooks/errors.js'
import type { BrokerEvents, HostErrorSource } from './hooks/events.js'
import { isPromise } from './hooks/promise.js'
import type { Client, ConnectionInfo, Message, SessionSummary } from './hooks/types.js'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { log } from './logging.js'
import type { BrokerStats } from './metrics/stats.js'
import { SysTree } from './metrics/sys-tree.js'
import { checkBridgeOptions, maskUrlPassword, type BridgeHandle, type BridgeOptions, type BridgeSummary } from './bridge/options.js'
import { BrokerLog } from './broker-log.js'
import type { Ban, BrokerOptions, Limits } from './options.js'
import type { Properties, QoS, Subscription } from './protocol/packets.js'
import { ReasonCode } from './protocol/reason-codes.js'
import { isValidTopicFilter, isValidTopicName } from './protocol/topics.js'
import { parseSharedFilter } from './routing/shared-group.js'
import { RoutedMessage } from './session/routed-message.js'
import { LocalSubscriber } from './session/local-subscriber.js'
import type { Listener, Transport } from './transports/transport.js'

/** The MQTT 5 properties a host may set on a message it publishes. */
export interface PublishProperties {
  /** 1: the payload is UTF-8 text; 0 or absent: unspecified bytes. */
  payloadFormatIndicator?: 0 | 1
  /** Seconds after which the message is no longer delivered (queued or retained). */
  messageExpiryInterval?: number
  /** The payload's content type, e.g. 'application/json'. */
  contentType?: string
  /** Where the receiver should send its response (a topic name, no wildcards). */
  responseTopic?: string
  /** Data the responder sends back, to match its response to this request. */
  correlationData?: Buffer | Uint8Array | string
  /** Name/value pairs forwarded to MQTT 5 subscribers, in order. */
  userProperties?: Array<[string, string]>
}

/** A message the host application publishes. */
export interface PublishOptions {
  topic: string
  payload?: Buffer | Uint8Array | string
  /** Default 0. */
  qos?: QoS
  /** Default false. */
  retain?: boolean
  /** MQTT 5 properties, forwarded to MQTT 5 subscribers (3.1.1 subscribers get the message without them). */
  properties?: PublishProperties
}

/** What `broker.publish` did. */
export interface PublishResult {
  /** How many subscribers (client sessions, in-process subscribers, shared groups) the message matched. */
  matched: number
}

/** Options of `broker.drain`. */
export interface DrainOptions {
  /** How long to wait in all for clients to leave and in-flight QoS 1/2 messages to be acknowledged. Default 30,000 ms. */
  timeoutMs?: number
  /** Disconnects are spread evenly over this time, so the clients do not all reconnect elsewhere at once. Default 0: all at once. */
  spreadMs?: number
  /**
   * MQTT 5 clients are told to go to this server (DISCONNECT 0x9D Server moved, with this Server
   * Reference; 0x9C Use another server when `temporary`). Absent: DISCONNECT 0x8B Server shutting down.
   */
  serverReference?: string
  /** With `serverReference`: 0x9C (use another server, temporarily) rather than 0x9D (server moved). Default true. */
  temporary?: boolean
}

/** An open listener, as `broker.listeners` lists it. */
export interface ListenerSummary {
  /** The transport's name: 'tcp', 'tls', 'ws', 'unix', ... */
  readonly transport: string
  /** Where it listens: a TCP address, or a path for unix sockets. */
  readonly address: AddressInfo | string
}

/** A user name and password to check with `broker.checkCredentials`. */
export interface CredentialsCheck {
  readonly username: string
  readonly password: string
  /** The HTTP request they came with: the hook gets its address (not the request: see `checkCredentials`). */
  readonly request?: IncomingMessage | undefined
  /** The `transport` the hook is told. Default 'http'. */
  readonly transport?: string
  /** The `clientId` the hook is told. Default ''. */
  readonly clientId?: string
}

/** What `broker.health()` reports, for liveness and readiness probes. */
export interface BrokerHealth {
  /** The process serves: the event loop is not stalled (its p99 delay over the last seconds is under 5 s). */
  readonly alive: boolean
  /** Listening on at least one transport, stored state restored, not draining nor closed. */
  readonly ready: boolean
  readonly draining: boolean
  /** The event loop's delay over the last few seconds (p99), in ms. */
  readonly eventLoopDelayMs: number
}

/** Options of `broker.subscribe`. */
export interface SubscribeOptions {
  /**
   * Whether the retained messages matching the filter are delivered first (with `retain` true),
   * as an MQTT subscriber gets them. Default false. Not available for `$share/...` filters.
   */
  retained?: boolean
}

/**
 * Receives messages for `broker.subscribe`. Its return value is ignored; if it throws or rejects,
 * the error goes to the `hostError` event, never into the broker.
 */
export type MessageHandler = (message: Message) => unknown

/** Checks the properties a host passes to `broker.publish`, and copies them into the message's form. */
function publishProperties(given: PublishProperties): Properties | undefined {
  const out: Properties = {}
  const { payloadFormatIndicator, messageExpiryInterval, contentType, responseTopic, correlationData, userProperties } = given
  if (payloadFormatIndicator !== undefined) {
    if (payloadFormatIndicator !== 0 && payloadFormatIndicator !== 1) throw new TypeError('properties.payloadFormatIndicator must be 0 or 1')
    out.payloadFormatIndicator = payloadFormatIndicator
  }
  if (messageExpiryInterval !== undefined) {
    if (!Number.isInteger(messageExpiryInterval) || messageExpiryInterval < 0 || messageExpiryInterval > 0xffffffff) {
      throw new TypeError('properties.messageExpiryInterval must be an integer number of seconds from 0 to 4294967295')
    }
    out.messageExpiryInterval = messageExpiryInterval
  }
  if (contentType !== undefined) out.contentType = String(contentType)
  if (responseTopic !== undefined) {
    // [MQTT-3.3.2-14] a Response Topic is a topic name: no wildcards
    if (!isValidTopicName(responseTopic)) throw new TypeError(`properties.responseTopic ${JSON.stringify(responseTopic)} is not a valid topic name`)
    out.responseTopic = responseTopic
  }
  // A copy, as for the payload: the caller may reuse its buffer.
  if (correlationData !== undefined) out.correlationData = typeof correlationData === 'string' ? Buffer.from(correlationData) : Buffer.from(correlationData)
  if (userProperties !== undefined) {
    if (!Array.isArray(userProperties) || !userProperties.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string')) {
      throw new TypeError('properties.userProperties must be an array of [name, value] string pairs')
    }
    out.userProperties = userProperties.map(([name, value]) => [name, value])
  }
  return Object.keys(out).length > 0 ? out : undefined
}

/**
 * An MQTT broker running inside this process.
 *
 * ```ts
 * const broker = new Broker({ authenticate })
 * const listener = await broker.listen(tcp({ port: 1883 }))
 * broker.on('clientConnect', (client) => console.log(client.id))
 * await broker.close()
 * ```
 *
 * Events (typed, see {@link BrokerEvents}): `clientConnect`, `clientDisconnect`, `connectRefused`,
 * `connectionError`, `publish`, `subscribe`, `unsubscribe`, `willPublish`, `clientError`,
 * `hostError`. A listener that throws or rejects is reported on `hostError` and never disturbs
 * the broker or the other listeners. Only the broker emits its events.
 */
export class Broker {
  private readonly core: BrokerCore
  private readonly events = new EventEmitter()
  /** The listeners started by `listen`, with their transport's name. */
  private readonly listenersOpen = new Map<Listener, string>()
  private readonly ready: Promise<void>
  private restored = false
  private closing: Promise<void> | undefined
  private draining: Promise<void> | undefined
  /** The host's logger, when `options.logger` is given. */
  private readonly hostLog: BrokerLog | undefined
  /** The $SYS tree, unless `sys.interval` is 0. */
  private readonly sys: SysTree | undefined
  /** The outgoing bridges running, by name. */
  private readonly bridgesRunning = new Map<string, BridgeHandle | Promise<BridgeHandle>>()

  constructor(options: BrokerOptions = {}) {
    // Checked before the core starts anything (its event-loop monitor).
    const sysInterval = options.sys?.interval ?? 10
    if (!Number.isInteger(sysInterval) || sysInterval < 0 || sysInterval > 86_400) {
      throw new RangeError(`sys.interval must be an integer number of seconds from 0 to 86400, got ${String(sysInterval)}`)
    }
    this.core = new BrokerCore(options, (event, ...args) => this.fire(event, args))
    // The emitter's own notices keep the flag exact, listeners removed by `once` included.
    this.events.on('newListener', (event: string | symbol) => {
      if (event === 'publish') this.core.publishListened = true
    })
    this.events.on('removeListener', (event: string | symbol) => {
      if (event === 'publish') this.core.publishListened = this.events.listenerCount('publish') > 0
    })
    this.hostLog = options.logger === undefined ? undefined : new BrokerLog(options.logger)
    this.sys = sysInterval === 0 ? undefined : new SysTree(sysInterval, () => this.stats(), (topic, payload) => this.core.publishSys(topic, payload))
    this.ready = this.core.restore().then(() => {
      this.restored = true
      if (this.closing === undefined) this.sys?.start()
    })
    // Surfaced when awaited (listen/publish/subscribe); this keeps it from being unhandled meanwhile.
    this.ready.catch((error: unknown) => log.error('restoring sessions failed: %O', error))
  }

  /** Adds a listener for a broker event. */
  on<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this {
    this.events.on(event, listener)
    return this
  }

  /** Same as `on`. */
  addListener<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this {
    return this.on(event, listener)
  }

  /** Adds a listener called at most once. */
  once<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this {
    this.events.once(event, listener)
    return this
  }

  /** Removes a listener added with `on` or `once`. */
  off<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this {
    this.events.off(event, listener)
    return this
  }

  /** Same as `off`. */
  removeListener<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this {
    return this.off(event, listener)
  }

  /** Removes every listener of `event`, or of every event. */
  removeAllListeners(event?: keyof BrokerEvents): this {
    if (event !== undefined) this.events.removeAllListeners(event)
    // Event by event: removeAllListeners() would also drop the two that keep publishListened.
    else for (const name of this.events.eventNames()) if (name !== 'newListener' && name !== 'removeListener') this.events.removeAllListeners(name)
    return this
  }

  /** How many listeners `event` has. */
  listenerCount(event: keyof BrokerEvents): number {
    return this.events.listenerCount(event)
  }

  /** The limits in force: the defaults overlaid with `options.limits`. */
  get limits(): Readonly<Limits> {
    return this.core.limits
  }

  /**
   * In cluster mode, this node's id: the clients, counts and events of a broker are those of its
   * own node. Undefined when the broker is not part of a cluster.
   */
  get nodeId(): string | undefined {
    return this.core.cluster?.nodeId
  }

  /** Number of connected clients (past CONNECT). */
  get connectedClients(): number {
    return this.core.clients.size
  }

  /** The connected clients (past CONNECT), a snapshot. Kick one with `client.close()`. */
  get clients(): Client[] {
    return [...this.core.clients.values()]
  }

  /** The connected client with this identifier, if any; `broker.getClient(id)?.close()` disconnects it. */
  getClient(id: string): Client | undefined {
    return this.core.clients.get(id)
  }

  /** The session of a client identifier, connected or not (persistent sessions outlive their connection), if any. */
  getSession(clientId: string): SessionSummary | undefined {
    const session = this.core.sessions.get(clientId)
    if (session === undefined) return undefined
    return {
      clientId,
      persistent: session.persistent,
      connected: session.link !== null,
      expiryInterval: session.expiryInterval,
      subscriptions: session.subscriptions.size,
      inflight: session.inflightCount,
      queued: session.queuedCount,
      queuedBytes: session.queuedBytes,
      dropped: session.dropped,
    }
  }

  /**
   * A snapshot of the broker's state and running totals: connections, sessions, subscriptions,
   * retained messages, packets, bytes, messages by QoS, drops by reason, CONNACK codes, denials.
   * $SYS, `/metrics` and the dashboard all read it. Cheap to take; call it when you need it.
   */
  stats(): BrokerStats {
    return this.core.stats(this.health(), this.bridgeStates())
  }

  /** Every session, connected or not (persistent sessions outlive their connection), as snapshots. */
  get sessions(): SessionSummary[] {
    return [...this.core.sessions.keys()].map((id) => this.getSession(id) as SessionSummary)
  }

  /** The subscriptions of a session (connected or not), or undefined if it has none by that id. */
  getSubscriptions(clientId: string): Subscription[] | undefined {
    const session = this.core.sessions.get(clientId)
    return session === undefined ? undefined : [...session.subscriptions.values()].map((sub) => ({ ...sub }))
  }

  /** Liveness and readiness, as `/healthz` and `/readyz` report them. */
  health(): BrokerHealth {
    return this.core.health(this.listenersOpen.size > 0 && this.restored && this.closing === undefined)
  }

  /**
   * Bans a client identifier, a user name, or an address or CIDR block, until `ban.until` (or
   * until `unban`). A banned address's sockets are closed at accept; a banned client identifier or
   * user name gets CONNACK 0x8A Banned (3.1.1: 5, not authorized). Connected clients it matches
   * are disconnected (MQTT 5: DISCONNECT 0x98 administrative action). A ban with the same client
   * identifier, user name and address replaces the earlier one. Throws a TypeError for a ban
   * naming none of them, or an address that is neither an IP address nor a CIDR block.
   */
  ban(ban: Ban): void {
    this.core.ban(ban)
  }

  /** Lifts the bans on this client identifier, user name or address; returns whether there was one. */
  unban(ban: Pick<Ban, 'clientId' | 'username' | 'address'>): boolean {
    return this.core.protection.unban(ban)
  }

  /** The bans in force now (expired ones are gone). */
  bans(): Ban[] {
    return this.core.protection.list()
  }

  /** The listeners `listen` started and that are still open: their transport's name and address. */
  get listeners(): ListenerSummary[] {
    const open: ListenerSummary[] = []
    for (const [listener, transport] of this.listenersOpen) {
      const address = listener.address()
      if (address !== null) open.push({ transport, address })
    }
    return open
  }

  /** The outgoing bridges running (those still starting are left out), by name; a password in a URL shows as `***`. */
  get bridges(): BridgeSummary[] {
    const running: BridgeSummary[] = []
    for (const bridge of this.bridgesRunning.values()) {
      if (bridge instanceof Promise) continue
      running.push({ name: bridge.name, url: maskUrlPassword(bridge.url), connected: bridge.connected, localClientId: bridge.localClientId })
    }
    return running.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /** Each running bridge's name and state, for `stats()` (no URL work: it runs at every scrape). */
  private bridgeStates(): Array<{ name: string; connected: boolean }> {
    const states: Array<{ name: string; connected: boolean }> = []
    for (const bridge of this.bridgesRunning.values()) if (!(bridge instanceof Promise)) states.push({ name: bridge.name, connected: bridge.connected })
    return states.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /**
   * The retained messages whose topics match a filter (`'#'`: all but `$SYS`, as for a
   * subscription [MQTT-4.7.2-1]; `'$SYS/#'` the broker's own), in no particular order. Expired
   * ones are left out (and leave storage, as for a subscription); properties are as published
   * (a Message Expiry Interval is not counted down). Throws a TypeError for an invalid or shared
   * (`$share/...`) filter. Delete one by publishing an empty retained message to its topic.
   */
  getRetained(topicFilter = '#'): Message[] {
    if (!isValidTopicFilter(topicFilter)) throw new TypeError(`invalid topic filter ${JSON.stringify(topicFilter)}`)
    if (parseSharedFilter(topicFilter) !== null) throw new TypeError(`${JSON.stringify(topicFilter)} is a shared subscription: give its topic filter`)
    // The payload is shared (read it, do not write to it, as every Message's); the properties are copies.
    return this.core.retained
      .match(topicFilter)
      .map((m) => (m.properties === undefined ? { topic: m.topic, payload: m.payload, qos: m.qos, retain: true } : { topic: m.topic, payload: m.payload, qos: m.qos, retain: true, properties: structuredClone(m.properties) }))
  }

  /**
   * Asks the broker's `authenticate` hook about a user name and password presented outside MQTT
   * (the dashboard's HTTP Basic credentials), as for a client connecting over `transport`
   * (default 'http'; 'bridge' is refused with a TypeError: it is the broker's own bridges') from
   * the request's address, with no `request`: the hook must judge the user
   * name and password alone. Resolves true when the hook accepts them, false when it refuses them
   * or throws (reported on `hostError`) or the user name or address is banned, and undefined when
   * the broker has no `authenticate` hook (nobody can vouch for them).
   */
  async checkCredentials(credentials: CredentialsCheck): Promise<boolean | undefined> {
    // 'bridge' is the broker's own bridges' transport, which hooks may trust without a password.
    if (credentials.transport === 'bridge') throw new TypeError("transport 'bridge' is reserved for the broker's own bridges")
    const hook = this.core.authenticate
    if (hook === undefined) return undefined
    const socket = credentials.request?.socket
    // Bans hold here too: a banned user name or address is refused without asking the hook.
    if (this.core.protection.connectBan(credentials.clientId ?? '', credentials.username) !== undefined) return false
    if (socket?.remoteAddress !== undefined && this.core.protection.addressBanned(socket.remoteAddress)) return false
    try {
      // Not the request itself: a hook that accepts WebSocket clients by a cookie or a token in
      // it would then vouch for whatever user name came with the browser's request.
      const result = await hook({
        clientId: credentials.clientId ?? '',
        username: credentials.username,
        password: Buffer.from(credentials.password, 'utf8'),
        remoteAddress: socket?.remoteAddress,
        remotePort: socket?.remotePort,
        protocolVersion: 5,
        transport: credentials.transport ?? 'http',
        certificate: undefined,
        request: undefined,
      })
      return result === true
    } catch (error) {
      this.fire('hostError', [asError(error), { kind: 'hook', hook: 'authenticate', clientId: credentials.clientId ?? '' }])
      return false
    }
  }

  /**
   * Takes the broker out of service gracefully, for a rolling restart: stops accepting connections
   * and reports not ready at once, disconnects the clients spread over `spreadMs` (MQTT 5:
   * DISCONNECT 0x8B, or 0x9C/0x9D with a Server Reference), waits up to `timeoutMs` for in-flight
   * QoS 1/2 messages to be acknowledged, then closes as `close()` does. Resolves once closed.
   */
  drain(options: DrainOptions = {}): Promise<void> {
    if (this.closing !== undefined) return this.closing
    this.draining ??= this.runDrain(options)
    return this.draining
  }

  private async runDrain(options: DrainOptions): Promise<void> {
    const timeoutMs = options.timeoutMs ?? 30_000
    const spreadMs = Math.min(options.spreadMs ?? 0, timeoutMs)
    const deadline = Date.now() + timeoutMs
    this.core.draining = true
    log.broker('Draining: %d clients over %d ms, at most %d ms in all', this.core.clients.size, spreadMs, timeoutMs)
    this.hostLog?.info('draining', { clients: this.core.clients.size, spreadMs, timeoutMs })
    // Stop accepting now; a listener's close resolves once its connections are gone, awaited below.
    const stopping = [...this.listenersOpen.keys()].map((l) => l.close())
    this.listenersOpen.clear()
    // MQTT 5 clients are told where to go, if the host says; others just see the connection close.
    const reference = options.serverReference
    const code = reference === undefined ? ReasonCode.ServerShuttingDown : options.temporary === false ? ReasonCode.ServerMoved : ReasonCode.UseAnotherServer
    const started = Date.now()
    const connections = [...this.core.connections]
    const turns = connections.map((_, i) => started + (connections.length > 1 ? (spreadMs * i) / (connections.length - 1) : 0))
    // Those whose turn is now take no new QoS 1/2 message from this moment, before anything awaits.
    connections.forEach((connection, i) => {
      if ((turns[i] as number) <= started) this.core.quiesce(connection)
    })
    await this.ready.catch(() => {})
    await Promise.all(
      connections.map(async (connection, i) => {
        await sleepUntil(turns[i] as number)
        this.core.quiesce(connection)
        // What the client has in flight is settled first, within the time left.
        await this.core.settled(connection, deadline)
        connection.end('server-closing', code, undefined, reference)
      }),
    )
    await this.close()
    await Promise.all(stopping)
  }

  /** Starts a transport; connections it accepts are served by this broker. */
  async listen(transport: Transport): Promise<Listener> {
    if (this.closing || this.core.draining) throw new Error('broker is closed')
    await this.ready
    const listener = await transport.listen((stream, info) => this.handle(stream, info), {
      maxPacketSize: this.core.limits.maxPacketSize,
      admit: (request, socket) => this.core.admit(request, socket),
    })
    if (this.closing) {
      // close() ran while the transport was starting: it must not stay open behind our back.
      await listener.close()
      throw new Error('broker is closed')
    }
    this.listenersOpen.set(listener, transport.name)
    return listener
  }

  /** Serves one client over any Duplex stream (a socket, a WebSocket stream, a test pipe). */
  handle(stream: Duplex, info: ConnectionInfo = {}): void {
    if (this.closing || this.core.draining) {
      stream.destroy()
      return
    }
    if (this.restored) {
      this.core.handle(stream, info)
      return
    }
    // Sessions from persistence are still loading: a client served now would miss its session.
    this.ready.then(
      () => this.handle(stream, info),
      () => stream.destroy(),
    )
  }

  /**
   * Publishes a message from the host application to every matching subscriber. Resolves once
   * the message is routed and, with a durable persistence adapter, committed wherever it is kept
   * (retained, queued for persistent sessions), without waiting for any client; rejects if the
   * store fails to keep it.
   * May publish to `$SYS/...` topics, which clients may not.
   */
  async publish(options: PublishOptions): Promise<PublishResult> {
    if (!isValidTopicName(options.topic)) throw new TypeError(`invalid topic name ${JSON.stringify(options.topic)}`)
    const qos = options.qos ?? 0
    if (qos !== 0 && qos !== 1 && qos !== 2) throw new TypeError(`invalid QoS ${String(qos)}`)
    if (options.retain === true && !this.core.capabilities.retainAvailable) {
      throw new TypeError('retain is not available: capabilities.retainAvailable is false')
    }
    const properties = options.properties === undefined ? undefined : publishProperties(options.properties)
    if (this.closing) throw new Error('broker is closed')
    await this.ready
    const payload = options.payload ?? Buffer.alloc(0)
    // A copy: the caller may reuse its buffer while the message is still queued or retained.
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload)
    const message = new RoutedMessage(options.topic, bytes, qos, options.retain ?? false)
    if (properties !== undefined) message.properties = properties
    const { matched, stored } = this.core.publishFromHost(message)
    await stored
    return { matched }
  }

  /**
   * Subscribes the host application to a topic filter; the returned function unsubscribes.
   * Messages arrive at the QoS they were published with. A `$share/{ShareName}/{filter}` filter
   * joins that shared subscription group as one member, next to MQTT clients. In a cluster it
   * resolves once the other nodes route matching messages here.
   */
  async subscribe(topicFilter: string, handler: MessageHandler, options: SubscribeOptions = {}): Promise<() => void> {
    const shared = topicFilter.startsWith('$share/') ? parseSharedFilter(topicFilter) : null
    if (topicFilter.startsWith('$share/') && (shared === null || !isValidTopicFilter(shared.filter))) {
      throw new TypeError(`invalid shared subscription ${JSON.stringify(topicFilter)}: expected $share/{ShareName}/{filter}`)
    }
    if (!isValidTopicFilter(topicFilter)) throw new TypeError(`invalid topic filter ${JSON.stringify(topicFilter)}`)
    if (shared !== null && options.retained === true) throw new TypeError('retained messages are not sent for shared subscriptions')
    if (this.closing) throw new Error('broker is closed')
    await this.ready
    const subscriber = new LocalSubscriber(topicFilter, handler, (error) => this.fire('hostError', [error, { kind: 'subscriber', topicFilter }]))
    const journal = this.core.journal
    const mark = journal.recorded
    this.core.subscribeLocal(topicFilter, subscriber)
    // In a cluster, the subscription is known to the other nodes once its route is committed:
    // from then on a message published on any node reaches it.
    if (journal.durable && journal.recorded !== mark) {
      // A failed commit is committed again: the route holds once one of them succeeded.
      const committed = (resolve: () => void): void => journal.afterCommit((ok) => (ok ? resolve() : journal.whenCommitted(() => committed(resolve))))
      await new Promise<void>(committed)
    }
    if (options.retained === true) await this.core.sendRetainedLocal(topicFilter, subscriber)
    return () => {
      this.core.unsubscribeLocal(topicFilter, subscriber)
    }
  }

  /**
   * Starts an outgoing bridge to another MQTT broker (needs the optional `mqtt` package, loaded
   * only now). Messages for `out` topics wait in the bridge's persistent session on this broker
   * (client id `bridge:<name>`) until the remote acknowledged them, so none is lost while the link
   * is down; `in` topics are published here. Resolves once the bridge's local side is connected;
   * the remote may connect later (`bridgeUp` event, `handle.connected`). Throws a TypeError for
   * invalid options or a name already in use. `broker.close()` closes the bridges. See docs/bridges.md.
   */
  async bridge(options: BridgeOptions): Promise<BridgeHandle> {
    const checked = checkBridgeOptions(options)
    if (this.closing || this.core.draining) throw new Error('broker is closed')
    if (this.bridgesRunning.has(checked.name)) throw new TypeError(`a bridge named ${JSON.stringify(checked.name)} is already running`)
    const starting = (async () => {
      await this.ready
      const { startBridge } = await import('./bridge/bridge.js')
      const handle = await startBridge(
        {
          handle: (stream, info) => this.handle(stream, info),
          publishSys: (topic, payload) => this.core.publishSys(topic, payload),
          fire: (event, args) => this.fire(event, args),
          refuseBridged: (clientId, refuse) => this.core.refuseBridged(clientId, refuse),
          subscriptions: (clientId) => (this.getSubscriptions(clientId) ?? []).map((s) => s.topicFilter),
        },
        checked,
      )
      // Closing the handle forgets it, so the name can be used again.
      const close = handle.close.bind(handle)
      return Object.assign(handle, {
        close: async () => {
          await close()
          if (this.bridgesRunning.get(checked.name) === handle) this.bridgesRunning.delete(checked.name)
        },
      })
    })()
    this.bridgesRunning.set(checked.name, starting)
    try {
      const handle = await starting
      this.bridgesRunning.set(checked.name, handle)
      return handle
    } catch (error) {
      this.bridgesRunning.delete(checked.name)
      throw error
    }
  }

  /**
   * Shuts down gracefully: stops the listeners, closes every client (publishing the wills that
   * are due), stops the session-expiry and will-delay timers (the store keeps their due times for
   * the next broker), commits what is left and closes persistence. Rejects if the store refuses
   * the last changes. Calling it again returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    await this.ready.catch(() => {})
    // Bridges first: their local sessions keep what the remote has not acknowledged.
    await Promise.all(
      [...this.bridgesRunning.values()].map(async (b) => {
        try {
          await (await b).close()
        } catch {
          // One that failed to start is closed already; closing does not fail.
        }
      }),
    )
    this.sys?.stop()
    this.core.stopMonitors()
    const stopping = [...this.listenersOpen.keys()].map((l) => l.close())
    this.listenersOpen.clear()
    for (const connection of [...this.core.connections]) connection.end('server-closing')
    await Promise.all(stopping)
    this.core.checkpoint()
    // Expiry and will timers stop here: the store keeps their due times for the next broker.
    this.core.stopTimers()
    try {
      await this.core.settle()
    } finally {
      await this.core.cluster?.stop()
      this.core.journal.stop()
      await this.core.persistence.close()
      log.broker('Broker closed')
    }
  }

  /** Calls each listener in isolation: one that throws or rejects goes to `hostError`, and the rest still run. */
  private fire(event: keyof BrokerEvents, args: unknown[]): void {
    if (this.hostLog !== undefined) {
      try {
        this.hostLog.event(event, args)
      } catch (error) {
        // A failing logger must not take the broker down; debug still has the line.
        log.error('the logger failed on %s: %O', event, error)
      }
    }
    const listeners = this.events.rawListeners(event) as Array<(...a: unknown[]) => unknown>
    if (listeners.length === 0) {
      // With a logger, the host's own log has the error already.
      if (event === 'hostError' && this.hostLog === undefined) printHostError(args[0], args[1] as HostErrorSource)
      return
    }
    for (const listener of listeners) {
      try {
        const result = listener.apply(this, args)
        if (isPromise(result)) result.catch((error: unknown) => this.listenerFailed(event, error))
      } catch (error) {
        this.listenerFailed(event, error)
      }
    }
  }

  private listenerFailed(event: keyof BrokerEvents, error: unknown): void {
    const source: HostErrorSource = { kind: 'listener', event }
    // A failing hostError listener cannot report on itself.
    if (event === 'hostError') printHostError(error, source)
    else this.fire('hostError', [asError(error), source])
  }
}

/** Resolves at `at` (ms since the epoch), at once if that has passed. */
function sleepUntil(at: number): Promise<void> {
  const ms = at - Date.now()
  return ms <= 0 ? Promise.resolve() : new Promise((resolve) => setTimeout(resolve, ms).unref())
}

function describeSource(source: HostErrorSource): string {
  switch (source.kind) {
    case 'hook':
      return `the ${source.hook} hook (client ${JSON.stringify(source.clientId)})`
    case 'listener':
      return `a ${source.event} listener`
    case 'subscriber':
      return `a broker.subscribe handler for ${JSON.stringify(source.topicFilter)}`
  }
}

/** What happens to a host error nobody listens for: stderr, so a bug in the host is never silent. */
function printHostError(error: unknown, source: HostErrorSource): void {
  const where = describeSource(source)
  log.error('%s failed: %O', where, error)
  console.error(`culex: ${where} failed (listen to 'hostError' to handle this):`, error)
}
