import type { QoS } from '../protocol/packets.js'
import { SubscriptionTrie } from './subscription-trie.js'

/** Anything that can receive routed messages: a client session or an in-process subscriber. */
export interface Subscriber<M> {
  /** Scratch fields the router uses to de-duplicate overlapping subscriptions without allocating. */
  matchGen: number
  matchQos: QoS
  deliver(message: M, qos: QoS): void
}

/** The per-subscription data the router needs. */
export interface RouteOptions {
  qos: QoS
}

/**
 * Routes a message to every subscriber with a matching subscription, once per subscriber at the
 * highest QoS among its matching subscriptions (capped by the message's own QoS).
 */
export class Router<M extends { topic: string; qos: QoS }, O extends RouteOptions = RouteOptions> {
  readonly trie = new SubscriptionTrie<Subscriber<M>, O>()
  private generation = 0
  private readonly targets: Array<Subscriber<M>> = []
  private readonly targetQos: QoS[] = []
  // Bound once: match() takes a visitor, and a closure per publish would be garbage per message.
  private readonly collect = (subscriber: Subscriber<M>, options: O): void => {
    if (subscriber.matchGen !== this.generation) {
      subscriber.matchGen = this.generation
      subscriber.matchQos = options.qos
      this.targets.push(subscriber)
    } else if (options.qos > subscriber.matchQos) {
      subscriber.matchQos = options.qos
    }
  }

  subscribe(filter: string, subscriber: Subscriber<M>, options: O): boolean {
    return this.trie.add(filter, subscriber, options)
  }

  unsubscribe(filter: string, subscriber: Subscriber<M>): boolean {
    return this.trie.remove(filter, subscriber)
  }

  /** Delivers `message`; returns how many subscribers it reached. */
  route(message: M): number {
    this.generation++
    // Delivery may re-enter route() (an in-process subscriber publishing), so this call works
    // on its own slice of the shared arrays and reads the marks before delivering.
    const start = this.targets.length
    this.trie.match(message.topic, this.collect)
    const end = this.targets.length
    const qos = this.targetQos
    for (let i = start; i < end; i++) {
      const granted = (this.targets[i] as Subscriber<M>).matchQos
      qos[i] = granted < message.qos ? granted : message.qos
    }
    for (let i = start; i < end; i++) (this.targets[i] as Subscriber<M>).deliver(message, qos[i] as QoS)
    this.targets.length = start
    return end - start
  }
}
