import { EventEmitter } from 'node:events'
import type { Duplex } from 'node:stream'
import type * as TypedEmitterTypes from 'typed-emitter'
import type { ConnectionInfo } from './connection/connection.js'
import type { BrokerEvents } from './connection/context.js'
import { BrokerCore } from './core.js'
import { isPromise } from './hooks/promise.js'
import type { Message } from './hooks/types.js'
import { log } from './logging.js'
import type { BrokerOptions, Limits } from './options.js'
import type { QoS } from './protocol/packets.js'
import { isValidTopicFilter, isValidTopicName } from './protocol/topics.js'
import { RoutedMessage } from './session/routed-message.js'
import type { Listener, Transport } from './transports/transport.js'

/** A message the host application publishes. */
export interface PublishOptions {
  topic: string
  payload?: Buffer | Uint8Array | string
  /** Default 0. */
  qos?: QoS
  /** Default false. */
  retain?: boolean
}

/** Receives messages for `broker.subscribe`. May be async; errors are logged, never thrown into the broker. */
export type MessageHandler = (message: Message) => void | Promise<void>

/** An in-process subscriber: routed like a client, delivered by a function call. */
class LocalSubscriber {
  matchGen = 0
  matchQos: QoS = 0
  matchIds: number[] | undefined = undefined
  matchRetainAsPublished = false

  constructor(private readonly handler: MessageHandler) {}

  deliver(message: RoutedMessage): void {
    try {
      const result = this.handler(message)
      if (isPromise(result)) result.catch((error: unknown) => log.error('broker.subscribe handler failed: %O', error))
    } catch (error) {
      log.error('broker.subscribe handler threw: %O', error)
    }
  }
}

const EventEmitterBase = EventEmitter as unknown as new () => TypedEmitterTypes.default<BrokerEvents>

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
 * Events (typed): `clientConnect`, `clientDisconnect`, `publish`, `subscribe`, `unsubscribe`,
 * `willPublish`, `clientError`. A listener that throws or rejects is logged on `culex:error`
 * and never disturbs the broker.
 */
export class Broker extends EventEmitterBase {
  private readonly core: BrokerCore
  private readonly listenersOpen = new Set<Listener>()
  private readonly ready: Promise<void>
  private restored = false
  private closed = false

  constructor(options: BrokerOptions = {}) {
    super()
    this.core = new BrokerCore(
      options,
      (event, ...args) => this.fire(event, args),
      (event) => this.listenerCount(event) > 0,
    )
    this.ready = this.core.restore().then(() => {
      this.restored = true
    })
    // Surfaced when awaited (listen/publish/subscribe); this keeps it from being unhandled meanwhile.
    this.ready.catch((error: unknown) => log.error('restoring sessions failed: %O', error))
  }

  /** The limits in force: the defaults overlaid with `options.limits`. */
  get limits(): Readonly<Limits> {
    return this.core.limits
  }

  /** Number of connected clients (past CONNECT). */
  get connectedClients(): number {
    let n = 0
    for (const c of this.core.connections) if (c.state === 'connected') n++
    return n
  }

  /** Starts a transport; connections it accepts are served by this broker. */
  async listen(transport: Transport): Promise<Listener> {
    if (this.closed) throw new Error('broker is closed')
    await this.ready
    const listener = await transport.listen((stream, info) => this.handle(stream, info), { maxPacketSize: this.core.limits.maxPacketSize })
    if (this.closed) {
      // close() ran while the transport was starting: it must not stay open behind our back.
      await listener.close()
      throw new Error('broker is closed')
    }
    this.listenersOpen.add(listener)
    return listener
  }

  /** Serves one client over any Duplex stream (a socket, a WebSocket stream, a test pipe). */
  handle(stream: Duplex, info: ConnectionInfo = {}): void {
    if (this.closed) {
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

  /** Publishes a message from the host application to every matching subscriber. */
  async publish(options: PublishOptions): Promise<void> {
    if (!isValidTopicName(options.topic)) throw new TypeError(`invalid topic name ${JSON.stringify(options.topic)}`)
    const qos = options.qos ?? 0
    if (qos !== 0 && qos !== 1 && qos !== 2) throw new TypeError(`invalid QoS ${String(qos)}`)
    if (this.closed) throw new Error('broker is closed')
    await this.ready
    const payload = options.payload ?? Buffer.alloc(0)
    // A copy: the caller may reuse its buffer while the message is still queued or retained.
    const bytes = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload)
    this.core.publish(new RoutedMessage(options.topic, bytes, qos, options.retain ?? false), null)
    await this.core.settle()
  }

  /**
   * Subscribes the host application to a topic filter; the returned function unsubscribes.
   * Messages arrive at the QoS they were published with.
   */
  async subscribe(topicFilter: string, handler: MessageHandler): Promise<() => void> {
    if (!isValidTopicFilter(topicFilter)) throw new TypeError(`invalid topic filter ${JSON.stringify(topicFilter)}`)
    if (this.closed) throw new Error('broker is closed')
    await this.ready
    const subscriber = new LocalSubscriber(handler)
    this.core.router.subscribe(topicFilter, subscriber, { qos: 2 })
    return () => {
      this.core.router.unsubscribe(topicFilter, subscriber)
    }
  }

  /**
   * Shuts down gracefully: stops the listeners, publishes the wills that are due, closes every
   * client, then flushes and closes persistence.
   */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.ready.catch(() => {})
    const stopping = [...this.listenersOpen].map((l) => l.close())
    this.listenersOpen.clear()
    for (const connection of [...this.core.connections]) connection.end('server-closing')
    await Promise.all(stopping)
    await this.core.settle(true)
    await this.core.persistence.close()
    log.broker('Broker closed')
  }

  /** Calls each listener in isolation: one that throws or rejects is logged and the rest still run. */
  private fire(event: keyof BrokerEvents, args: unknown[]): void {
    if (this.listenerCount(event) === 0) return
    for (const listener of this.rawListeners(event) as Array<(...a: unknown[]) => unknown>) {
      try {
        const result = listener.apply(this, args)
        if (isPromise(result)) result.catch((error: unknown) => log.error('a %s listener rejected: %O', event, error))
      } catch (error) {
        log.error('a %s listener threw: %O', event, error)
      }
    }
  }
}
