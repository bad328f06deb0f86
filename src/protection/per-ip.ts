import type { SocketRefusal } from '../metrics/counters.js'

/** What `PerIpLimits` watches to count a socket closed: any EventEmitter-like socket. */
export interface ClosableSocket {
  once(event: 'close', listener: () => void): unknown
}

interface Bucket {
  tokens: number
  /** When `tokens` was last computed. */
  stamp: number
}

/**
 * Per-address limits at accept: open connections (`max`) and new connections per second
 * (`rate`, a token bucket holding one second's worth, at least one, and starting full).
 *
 * Memory stays bounded by what is live: an address leaves the open-count map when its last socket
 * closes, and the bucket map is kept in order of last use (deleted and re-inserted on each take),
 * so `sweep` drops the buckets that have refilled from the front and stops at the first that has
 * not: amortised O(1) per call, however many addresses an attack used. (The connection's
 * `RateBucket` reads `Date.now()` and cannot say when it is full, hence this one.)
 */
export class PerIpLimits {
  private readonly open = new Map<string, number>()
  private readonly buckets = new Map<string, Bucket>()
  private readonly capacity: number
  /** How long an untouched bucket takes to refill from empty: after that it is as good as absent. */
  private readonly refillMs: number

  constructor(
    private readonly max: number,
    private readonly rate: number,
  ) {
    this.capacity = Math.max(1, rate)
    this.refillMs = rate > 0 ? (1000 * this.capacity) / rate : 0
  }

  /** Whether any limit is set: without one, nothing is counted. */
  get enabled(): boolean {
    return this.max > 0 || this.rate > 0
  }

  /**
   * The reason to refuse a new socket from `address`, or null: then it counts as open until
   * `socket` emits 'close' (once, however many times it is emitted).
   */
  admit(address: string, socket: ClosableSocket, now: number): SocketRefusal | null {
    if (this.max > 0 && (this.open.get(address) ?? 0) >= this.max) return 'per_ip_limit'
    if (this.rate > 0 && !this.take(address, now)) return 'per_ip_rate'
    if (this.max > 0) {
      this.open.set(address, (this.open.get(address) ?? 0) + 1)
      socket.once('close', () => this.closed(address))
    }
    return null
  }

  /** Drops the buckets that have refilled (they behave as absent ones). */
  sweep(now: number): void {
    for (const [address, bucket] of this.buckets) {
      if (now - bucket.stamp < this.refillMs) break
      this.buckets.delete(address)
    }
  }

  /** Open connections counted for `address`. */
  openCount(address: string): number {
    return this.open.get(address) ?? 0
  }

  /** Entries held: addresses with open connections, and rate buckets not yet refilled. */
  sizes(): { open: number; buckets: number } {
    return { open: this.open.size, buckets: this.buckets.size }
  }

  private take(address: string, now: number): boolean {
    const bucket = this.buckets.get(address)
    // A clock that steps back (injected, or NTP) must not mint tokens or lose them: treat it as no time passed.
    const tokens = bucket === undefined ? this.capacity : Math.min(this.capacity, bucket.tokens + (Math.max(0, now - bucket.stamp) * this.rate) / 1000)
    // Refused: no token taken, so the bucket is left as it was (its tokens at its stamp still say
    // all there is), and keeps its place in the order `sweep` relies on.
    if (tokens < 1) return false
    // Re-inserted at the end: the map stays in order of last use, for `sweep`.
    this.buckets.delete(address)
    this.buckets.set(address, { tokens: tokens - 1, stamp: now })
    return true
  }

  private closed(address: string): void {
    const count = (this.open.get(address) ?? 0) - 1
    if (count > 0) this.open.set(address, count)
    else this.open.delete(address)
  }
}
