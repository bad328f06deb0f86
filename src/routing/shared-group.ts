import type { QoS } from '../protocol/packets.js'
import type { RouteOptions, Subscriber } from './router.js'

/** A session as a shared subscription sees it. */
export interface SharedMember<M extends { qos: QoS; retain: boolean }> {
  /** Whether a network connection is attached right now. */
  readonly online: boolean
  deliver(message: M, qos: QoS, retain: boolean, subscriptionIds: number[] | undefined, group: SharedGroup<M> | undefined): void
}

/** The parts of a '$share/{ShareName}/{filter}' topic filter, or null when it is not a valid one. */
export function parseSharedFilter(filter: string): { shareName: string; filter: string } | null {
  const first = filter.indexOf('/')
  const second = filter.indexOf('/', first + 1)
  if (filter.slice(0, first) !== '$share' || second === -1) return null
  const shareName = filter.slice(first + 1, second)
  // [MQTT-4.8.2-1] a ShareName is at least one character, without '/', '+' or '#'
  if (shareName.length === 0 || shareName.includes('+') || shareName.includes('#')) return null
  return { shareName, filter: filter.slice(second + 1) }
}

/**
 * One shared subscription ('$share/{ShareName}/{filter}'): a single subscriber in the trie whose
 * deliveries go to one member each, round-robin, preferring members that are online.
 */
export class SharedGroup<M extends { qos: QoS; retain: boolean }> implements Subscriber<M> {
  matchGen = 0
  matchQos: QoS = 0
  matchIds: number[] | undefined = undefined
  matchRetainAsPublished = false

  private readonly members = new Map<SharedMember<M>, RouteOptions>()
  private order: Array<SharedMember<M>> = []
  private next = 0
  /** The full filter, '$share/{ShareName}/{filter}'. */
  readonly name: string

  constructor(
    readonly shareName: string,
    readonly filter: string,
  ) {
    this.name = `$share/${shareName}/${filter}`
  }

  get size(): number {
    return this.members.size
  }

  join(member: SharedMember<M>, options: RouteOptions): void {
    if (!this.members.has(member)) this.order.push(member)
    this.members.set(member, options)
  }

  leave(member: SharedMember<M>): boolean {
    if (!this.members.delete(member)) return false
    this.order = this.order.filter((m) => m !== member)
    return true
  }

  deliver(message: M): void {
    this.deliverExcept(message, null)
  }

  /** Delivers to the next member, online ones first; `except` is a member whose session just ended. */
  deliverExcept(message: M, except: SharedMember<M> | null): boolean {
    const n = this.order.length
    let chosen: SharedMember<M> | undefined
    let fallback: SharedMember<M> | undefined
    for (let i = 0; i < n; i++) {
      const member = this.order[(this.next + i) % n] as SharedMember<M>
      if (member === except) continue
      if (member.online) {
        chosen = member
        this.next = (this.next + i + 1) % n
        break
      }
      fallback ??= member
    }
    chosen ??= fallback
    if (chosen === undefined) return false
    const options = this.members.get(chosen) as RouteOptions
    const qos = options.qos < message.qos ? options.qos : message.qos
    const ids = options.subscriptionIdentifier === undefined ? undefined : [options.subscriptionIdentifier]
    chosen.deliver(message, qos, options.retainAsPublished === true && message.retain, ids, this)
    return true
  }
}
