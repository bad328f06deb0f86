import type { QoS } from '../protocol/packets.js'
import { SubscriptionTrie } from './subscription-trie.js'

/** Anything that can receive routed messages: a client session or an in-process subscriber. */
export interface Subscriber<M> {
  /** Scratch fields the router uses to merge overlapping subscriptions without allocating. */
  matchGen: number
  matchQos: QoS
  matchIds: number[] | undefined
  matchRetainAsPublished: boolean
  /**
   * Delivers at `qos`. `retain` is the RETAIN flag to send (set only for Retain As Published
   * subscriptions); `subscriptionIds` are the identifiers of every matching subscription.
   */
  deliver(message: M, qos: QoS, retain: boolean, subscriptionIds: number[] | undefined): void
  /**
   * The session of an outgoing bridge with `forwardBridged: false`. It is left out of messages that
   * came from another broker (`route(message, publisher, true)`); and what its bridge brings in
   * (published by it, as publisher) is kept from `incomingBridge` subscribers. Like
   * `incomingBridge`, read only for messages from another broker; absent means false; not looked at
   * through a shared group (the group is the subscriber). In-process subscribers leave both out.
   */
  readonly refusesBridged?: boolean
  /** The session of another broker's bridge (a client that connected with the bridge flag). */
  readonly incomingBridge?: boolean
}

/** The per-subscription data the router needs (a `Subscription` fits). */
export interface RouteOptions {
  qos: QoS
  /** MQTT 5 No Local: not sent back to the publisher's own session [MQTT-3.8.3-3]. */
  noLocal?: boolean
  /** MQTT 5 Retain As Published: forward the RETAIN flag as published [MQTT-3.3.1-12]. */
  retainAsPublished?: boolean
  subscriptionIdentifier?: number
}

/**
 * Topics whose matches the router remembers, at most. Past this the memory is cleared and filled
 * again: a workload of ever-new topics pays one Map insert per message, not unbounded growth.
 */
const ROUTE_CACHE_MAX = 4096

/**
 * What a topic matched: per subscriber, the highest QoS, the subscription identifiers and Retain
 * As Published of its matching subscriptions (before the message's own QoS and RETAIN apply).
 */
interface CachedRoute<M> {
  subscribers: Array<Subscriber<M>>
  qos: QoS[]
  ids: Array<number[] | undefined>
  retainAsPublished: boolean[]
}

/**
 * Routes a message to every subscriber with a matching subscription, once per subscriber at the
 * highest QoS among its matching subscriptions (capped by the message's own QoS), with the
 * identifiers of all of them [MQTT-3.3.4-3].
 */
export class Router<M extends { topic: string; qos: QoS; retain: boolean }, O extends RouteOptions = RouteOptions> {
  readonly trie = new SubscriptionTrie<Subscriber<M>, O>()
  private generation = 0
  private publisher: Subscriber<M> | null = null
  private readonly targets: Array<Subscriber<M>> = []
  /**
   * What each recent topic matched, so a topic published again skips the trie walk (publishers
   * mostly repeat their topics). Cleared by every subscribe and unsubscribe. Only routes that do
   * not depend on the publisher are kept: none of a No Local subscription, none from a bridge.
   */
  private readonly cache = new Map<string, CachedRoute<M>>()
  /** Set by collect when a No Local subscription matched: the route depends on the publisher. */
  private publisherDependent = false
  // Bound once: match() takes a visitor, and a closure per publish would be garbage per message.
  private readonly collect = (subscriber: Subscriber<M>, options: O): void => {
    if (options.noLocal === true) {
      this.publisherDependent = true
      if (subscriber === this.publisher) return
    }
    const id = options.subscriptionIdentifier
    if (subscriber.matchGen !== this.generation) {
      subscriber.matchGen = this.generation
      subscriber.matchQos = options.qos
      subscriber.matchIds = id === undefined ? undefined : [id]
      subscriber.matchRetainAsPublished = options.retainAsPublished === true
      this.targets.push(subscriber)
      return
    }
    if (options.qos > subscriber.matchQos) subscriber.matchQos = options.qos
    if (id !== undefined) (subscriber.matchIds ??= []).push(id)
    if (options.retainAsPublished === true) subscriber.matchRetainAsPublished = true
  }
  // The visitor for a message from another broker: the extra tests live here, off the usual path.
  private readonly collectBridged = (subscriber: Subscriber<M>, options: O): void => {
    if (subscriber.refusesBridged === true) return
    if (subscriber.incomingBridge === true && this.publisher !== null && this.publisher.refusesBridged === true) return
    this.collect(subscriber, options)
  }

  subscribe(filter: string, subscriber: Subscriber<M>, options: O): boolean {
    this.cache.clear()
    return this.trie.add(filter, subscriber, options)
  }

  unsubscribe(filter: string, subscriber: Subscriber<M>): boolean {
    this.cache.clear()
    return this.trie.remove(filter, subscriber)
  }

  /**
   * Delivers `message`; returns how many subscribers it reached. `publisher` is the publishing
   * client's own subscriber, for No Local. `bridged`: the message came from another broker (its
   * publisher is a bridge): subscribers that refuse such messages (`refusesBridged`) are left out,
   * and so are incoming bridges when the publisher is itself a session that refuses them.
   */
  route(message: M, publisher: Subscriber<M> | null = null, bridged = false): number {
    if (!bridged) {
      const cached = this.cache.get(message.topic)
      if (cached !== undefined) return this.deliverRoute(cached, message)
    }
    this.generation++
    // Delivery may re-enter route() (an in-process subscriber publishing), so the marks are read
    // into the route, and the shared arrays given back, before delivering.
    const start = this.targets.length
    this.publisher = publisher
    this.publisherDependent = false
    this.trie.match(message.topic, bridged ? this.collectBridged : this.collect)
    this.publisher = null
    const end = this.targets.length
    const route = this.collected(start, end)
    if (!bridged && !this.publisherDependent) {
      if (this.cache.size >= ROUTE_CACHE_MAX) this.cache.clear()
      this.cache.set(message.topic, route)
    }
    return this.deliverRoute(route, message)
  }

  /** What collect found (the targets from `start` to `end`), taken off the shared arrays. */
  private collected(start: number, end: number): CachedRoute<M> {
    const n = end - start
    const route: CachedRoute<M> = { subscribers: new Array(n), qos: new Array(n), ids: new Array(n), retainAsPublished: new Array(n) }
    for (let i = 0; i < n; i++) {
      const s = this.targets[start + i] as Subscriber<M>
      route.subscribers[i] = s
      route.qos[i] = s.matchQos
      route.ids[i] = s.matchIds
      route.retainAsPublished[i] = s.matchRetainAsPublished
    }
    this.targets.length = start
    return route
  }

  private deliverRoute(route: CachedRoute<M>, message: M): number {
    // The route's arrays are never changed once made (a subscribe or unsubscribe during delivery
    // replaces the cache, not them), so a re-entrant route() cannot disturb this loop.
    const { subscribers, qos, ids, retainAsPublished } = route
    const n = subscribers.length
    const messageQos = message.qos
    for (let i = 0; i < n; i++) {
      const q = qos[i] as QoS
      // [MQTT-3.3.1-9] RETAIN is cleared when forwarding, unless Retain As Published [MQTT-3.3.1-12]
      ;(subscribers[i] as Subscriber<M>).deliver(message, q < messageQos ? q : messageQos, (retainAsPublished[i] as boolean) && message.retain, ids[i])
    }
    return n
  }
}
