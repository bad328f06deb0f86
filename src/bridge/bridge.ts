/**
 * An outgoing bridge: two MQTT.js clients, one to Culex itself over an in-memory stream (the local
 * side, whose persistent session is the outbox) and one to the remote broker. Loaded, with MQTT.js,
 * only when the host creates a bridge.
 *
 * Out: Culex queues every message for the bridge's local session; the local client takes one at a
 * time and acknowledges it (PUBACK/PUBREC) only once the remote acknowledged the copy it forwarded.
 * While the remote is down, nothing is acknowledged, so the messages stay in the Culex session
 * (bounded by its limits; durable with a durable adapter) and leave it in order once it is back.
 *
 * In: messages from the remote are published on Culex through the same local client. The local
 * client's subscriptions have No Local (it speaks MQTT 5 to Culex), so what came in over the bridge
 * is never sent back out by it, even for a `both` topic: this is the whole of the local loop
 * protection. Toward the remote, MQTT 5 subscriptions have No Local and Retain As Published, and a
 * 3.1.1 connection carries the bridge flag (protocol level 0x84) that asks the remote for the same.
 * With `forwardBridged: false` the local session also refuses what came from any other broker (the
 * router leaves it out), and what the local client publishes does not go to incoming bridges, so a
 * bridge from the remote back to Culex on the same topics cannot loop.
 */
import type { Duplex } from 'node:stream'
import type { IClientOptions, IClientPublishOptions, IPublishPacket, MqttClient } from 'mqtt'
import type { ConnectionInfo } from '../hooks/types.js'
import createDebug from 'debug'
import type { QoS } from '../protocol/packets.js'
import { mapIn, mapOut } from './mapping.js'
import { maskUrlPassword, reconnectDelay, type BridgeHandle, type CheckedBridgeOptions } from './options.js'
import { duplexPair } from './pair.js'

/** `DEBUG=culex:bridge`: bridges connecting, disconnecting, failing. */
const debug = createDebug('culex:bridge')

/** What a bridge needs from its broker. */
export interface BridgeHost {
  /** Serves a connection, as `broker.handle`. */
  handle(stream: Duplex, info: ConnectionInfo): void
  /** Publishes a retained `$SYS` message from the broker itself. */
  publishSys(topic: string, payload: string): void
  /** Emits a broker event. */
  fire(event: 'bridgeUp' | 'bridgeDown', args: unknown[]): void
  /**
   * Whether the session of `clientId` (now, and any made later) refuses bridged messages (the
   * bridge's `forwardBridged: false`, see Session.refusesBridged); called before the local client
   * connects, so it holds from the first message.
   */
  refuseBridged(clientId: string, refuse: boolean): void
  /** The topic filters the session of `clientId` subscribes to now (its subscriptions outlive a bridge). */
  subscriptions(clientId: string): string[]
}

/** The MQTT 5 properties carried across the bridge (not aliases nor subscription identifiers, which belong to one connection). */
function carriedProperties(packet: IPublishPacket): IClientPublishOptions['properties'] {
  const p = packet.properties
  if (p === undefined) return undefined
  const out: NonNullable<IClientPublishOptions['properties']> = {}
  if (p.payloadFormatIndicator !== undefined) out.payloadFormatIndicator = p.payloadFormatIndicator
  if (p.messageExpiryInterval !== undefined) out.messageExpiryInterval = p.messageExpiryInterval
  if (p.contentType !== undefined) out.contentType = p.contentType
  if (p.responseTopic !== undefined) out.responseTopic = p.responseTopic
  if (p.correlationData !== undefined) out.correlationData = p.correlationData
  if (p.userProperties !== undefined) out.userProperties = p.userProperties
  return Object.keys(out).length > 0 ? out : undefined
}

function minQoS(a: number, b: number): QoS {
  return Math.min(a, b) as QoS
}

/**
 * MQTT.js's client internals a bridge needs: the backoff (its reconnect interval is otherwise
 * fixed) and the bridge flag (mqtt-packet writes protocol level 0x84 for a CONNECT with
 * `bridgeMode`, which MQTT.js never sets; a protocolVersion of 132 is refused).
 */
interface ClientInternals {
  _clearReconnect?: () => void
  _writePacket?: (packet: { cmd: string }, cb?: unknown) => void
}

/** Makes every CONNECT the client sends carry the 3.1.1 bridge flag (protocol level 0x84). */
function withBridgeFlag(client: MqttClient): void {
  const internals = client as unknown as ClientInternals
  const write = internals._writePacket
  if (typeof write !== 'function') throw new Error('this version of mqtt cannot send the bridge flag: set tryPrivate: false')
  internals._writePacket = function (this: MqttClient, packet, cb) {
    write.call(this, packet.cmd === 'connect' ? { ...packet, bridgeMode: true } : packet, cb)
  }
}

class Bridge implements BridgeHandle {
  readonly name: string
  readonly url: string
  readonly localClientId: string
  private local!: MqttClient
  private remote!: MqttClient
  private up = false
  private closed = false
  private closing: Promise<void> | undefined
  private attempts = 0
  private lastError: Error | undefined
  private readonly stateTopic: string

  constructor(
    private readonly host: BridgeHost,
    private readonly options: CheckedBridgeOptions,
  ) {
    this.name = options.name
    this.url = options.url
    this.localClientId = `bridge:${options.name}`
    this.stateTopic = `$SYS/broker/connection/${options.name}/state`
  }

  get connected(): boolean {
    return this.up
  }

  async start(mqtt: typeof import('mqtt')): Promise<void> {
    this.host.publishSys(this.stateTopic, '0')
    // Before the local session can be made or resumed (and set again by each bridge of this name).
    this.host.refuseBridged(this.localClientId, !this.options.forwardBridged)
    this.local = this.startLocal(mqtt)
    this.remote = this.startRemote(mqtt)
    await new Promise<void>((resolve, reject) => {
      // The local side is in-process: it answers at once, or something is wrong with the broker.
      const failed = (error: Error): void => reject(error)
      // A broker that is closing destroys the stream at once.
      const closed = (): void => reject(new Error('broker is closed'))
      this.local.once('error', failed)
      this.local.once('close', closed)
      this.localSubscribed = () => {
        this.local.off('error', failed)
        this.local.off('close', closed)
        resolve()
      }
    })
  }

  /** Called once the local subscriptions are in place (or at once without any). */
  private localSubscribed: () => void = () => {}

  /** The Culex side: an MQTT 5 client over an in-memory stream with a persistent session. */
  private startLocal(mqtt: typeof import('mqtt')): MqttClient {
    const outRoutes = this.options.routes.filter((r) => r.direction !== 'in')
    const streamBuilder = (): Duplex => {
      const [clientSide, brokerSide] = duplexPair()
      this.host.handle(brokerSide, { transport: 'bridge' })
      return clientSide
    }
    const options: IClientOptions = {
      clientId: this.localClientId,
      protocolVersion: 5,
      clean: false,
      // The outbox outlives the bridge's connection: it waits for the next bridge of this name.
      properties: { sessionExpiryInterval: 0xffffffff },
      // MQTT.js handles one incoming packet at a time and waits on customHandleAcks, PINGRESP
      // included: no keep alive on an in-process stream that cannot silently die.
      keepalive: 0,
      reconnectPeriod: 1_000,
      resubscribe: false,
      customHandleAcks: (topic, message, packet: IPublishPacket, done) => this.forward(topic, message, packet, done),
    }
    const local = new mqtt.MqttClient(streamBuilder, options)
    local.on('message', (topic, message, packet) => {
      // QoS 1 and 2 go through customHandleAcks; this is QoS 0, forwarded as it comes.
      if (packet.qos === 0) this.forward(topic, message, packet, () => {})
    })
    local.on('error', (error) => debug('bridge %s: local client: %s', this.name, error.message))
    let subscribed = false
    local.on('connect', () => {
      if (subscribed) return
      subscribed = true
      // Filters an earlier configuration of this bridge left in its session: they would keep
      // queueing messages the bridge can only drop.
      const wanted = new Set(outRoutes.map((r) => r.localFilter))
      const stale = this.host.subscriptions(this.localClientId).filter((f) => !wanted.has(f))
      if (stale.length > 0) {
        debug('bridge %s: unsubscribing %s, no longer bridged', this.name, stale.join(', '))
        local.unsubscribe(stale)
      }
      if (outRoutes.length === 0) {
        this.localSubscribed()
        return
      }
      // No Local: what this client publishes (the messages that came in) does not go back out.
      // Retain As Published: the remote gets the retain flag as published here. Retain Handling 1:
      // retained messages only for a new subscription, not again at each start.
      const filters = Object.fromEntries(outRoutes.map((r) => [r.localFilter, { qos: Math.max(1, r.qos) as QoS, nl: true, rap: true, rh: 1 }]))
      local.subscribe(filters, (error) => {
        if (error !== null && error !== undefined && !this.closed) debug('bridge %s: local subscribe failed: %s', this.name, error.message)
        this.localSubscribed()
      })
    })
    return local
  }

  /** One message from Culex to the remote; `done` acknowledges it to Culex. */
  private forward(topic: string, message: Buffer, packet: IPublishPacket, done: (error: Error | number, code?: number) => void): void {
    debug('bridge %s: out %s (dup %s)', this.name, topic, packet.dup)
    const crossing = mapOut(this.options.routes, topic)
    if (crossing === undefined) {
      // A subscription left in the session by an earlier configuration: nothing to do with it.
      done(0)
      return
    }
    const qos = minQoS(packet.qos, crossing.qos)
    const publish: IClientPublishOptions = { qos, retain: packet.retain }
    const properties = this.options.protocolVersion === 5 ? carriedProperties(packet) : undefined
    if (properties !== undefined) publish.properties = properties
    // While the remote is down, MQTT.js keeps a QoS 1/2 publish and sends it once reconnected;
    // the callback runs when the remote acknowledged it.
    const send = (): void => {
      this.remote.publish(crossing.topic, message, publish, (error) => {
        // Closing: the message stays unacknowledged in the Culex session, for the next bridge.
        if (this.closed) return
        if (error !== undefined && error !== null) {
          const code = (error as Error & { code?: unknown }).code
          if (qos > 0 && (typeof code !== 'number' || code < 0x80)) {
            // Not an answer from the remote ('Connection closed' while MQTT.js was resending its
            // store, ...): send it again; MQTT.js keeps it until the remote is back. At least once.
            debug('bridge %s: sending %s again: %s', this.name, crossing.topic, error.message)
            setImmediate(send)
            return
          }
          // QoS 0 toward the remote (the entry's qos, or published so): not kept while it is down.
          // The remote refused it (MQTT 5 reason code ≥ 0x80): retrying would block the outbox for good.
          debug('bridge %s: the remote refused %s: %s', this.name, crossing.topic, error.message)
        }
        done(0)
      })
    }
    send()
  }

  /** The remote side: MQTT.js to the remote URL, with backoff and jitter between attempts. */
  private startRemote(mqtt: typeof import('mqtt')): MqttClient {
    const o = this.options
    const inRoutes = o.routes.filter((r) => r.direction !== 'out')
    const options: IClientOptions = {
      clientId: o.clientId,
      protocolVersion: o.protocolVersion,
      clean: o.cleanSession,
      keepalive: o.keepAlive,
      reconnectPeriod: this.backoff(),
      connectTimeout: o.connectTimeout,
      // Connected below, once the CONNECT packet can be given the bridge flag.
      manualConnect: true,
      // QoS 0 is not kept in memory while the remote is down: only the Culex session keeps messages.
      queueQoSZero: false,
      ...(o.tls as IClientOptions | undefined),
    }
    if (o.username !== undefined) options.username = o.username
    if (o.password !== undefined) options.password = o.password
    if (o.protocolVersion === 5 && !o.cleanSession) options.properties = { sessionExpiryInterval: 0xffffffff }
    const remote = mqtt.connect(o.url, options)
    if (o.protocolVersion === 4 && o.tryPrivate) withBridgeFlag(remote)
    let subscribed = false
    remote.on('connect', () => {
      this.attempts = 0
      remote.options.reconnectPeriod = this.backoff()
      if (!subscribed && inRoutes.length > 0) {
        subscribed = true
        // MQTT.js subscribes again by itself when the remote has lost the session.
        const filters = Object.fromEntries(
          inRoutes.map((r) => [r.remoteFilter, o.protocolVersion === 5 ? { qos: r.qos, nl: true, rap: true } : { qos: r.qos }]),
        )
        remote.subscribe(filters, (error) => {
          if (error !== null && error !== undefined && !this.closed) debug('bridge %s: remote subscribe failed: %s', this.name, error.message)
        })
      }
      this.changed(true)
    })
    remote.on('reconnect', () => {
      // MQTT.js retries on a fixed interval: restart it with the next, longer, jittered pause.
      if (this.closed) return
      this.attempts += 1
      ;(remote as unknown as ClientInternals)._clearReconnect?.()
      remote.options.reconnectPeriod = this.backoff()
    })
    remote.on('error', (error) => {
      this.lastError = error
      debug('bridge %s: %s', this.name, error.message)
    })
    remote.on('close', () => this.changed(false))
    remote.on('message', (topic, payload, packet) => this.arrive(topic, payload, packet))
    remote.connect()
    return remote
  }

  /** The pause before the next attempt. */
  private backoff(): number {
    return reconnectDelay(this.attempts, this.options.reconnectPeriod, this.options.maxReconnectPeriod)
  }

  /**
   * A message from the remote, published on Culex through the local client, so its No Local keeps
   * it from going back out. It is acknowledged to the remote once handed to Culex in-process.
   */
  private arrive(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (this.closed) return
    const crossing = mapIn(this.options.routes, topic)
    if (crossing === undefined) return
    const publish: IClientPublishOptions = { qos: minQoS(packet.qos, crossing.qos), retain: packet.retain }
    const properties = carriedProperties(packet)
    if (properties !== undefined) publish.properties = properties
    this.local.publish(crossing.topic, payload, publish, (error) => {
      if (error !== undefined && error !== null && !this.closed) debug('bridge %s: publishing %s on Culex failed: %s', this.name, crossing.topic, error.message)
    })
  }

  private changed(up: boolean): void {
    if (this.up === up) return
    this.up = up
    this.host.publishSys(this.stateTopic, up ? '1' : '0')
    if (up) {
      this.lastError = undefined
      debug('Bridge %s connected to %s', this.name, maskUrlPassword(this.options.url))
      this.host.fire('bridgeUp', [this.name])
    } else {
      debug('Bridge %s disconnected from %s', this.name, maskUrlPassword(this.options.url))
      this.host.fire('bridgeDown', [this.name, this.lastError])
    }
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown()
    return this.closing
  }

  private async shutdown(): Promise<void> {
    this.closed = true
    // No reconnection after this, even for an attempt still under way (with manualConnect,
    // MQTT.js would otherwise set up reconnecting again when that attempt fails).
    this.local.options.reconnectPeriod = 0
    this.remote.options.reconnectPeriod = 0
    // Forced: no more acknowledgements to Culex, and no waiting for a remote that may be down.
    await new Promise<void>((resolve) => this.local.end(true, () => resolve()))
    await new Promise<void>((resolve) => this.remote.end(true, () => resolve()))
    this.changed(false)
  }
}

/** Starts a bridge; resolves once its local side is connected to Culex (the remote may come later). */
export async function startBridge(host: BridgeHost, options: CheckedBridgeOptions): Promise<BridgeHandle> {
  let mqtt: typeof import('mqtt')
  try {
    const mod = (await import('mqtt')) as typeof import('mqtt') & { default?: typeof import('mqtt') }
    mqtt = mod.default ?? mod
  } catch (error) {
    throw new Error('bridges need the mqtt package: npm install mqtt', { cause: error })
  }
  const bridge = new Bridge(host, options)
  try {
    await bridge.start(mqtt)
  } catch (error) {
    await bridge.close()
    throw error
  }
  return bridge
}
