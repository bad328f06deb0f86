import type { Duplex } from 'node:stream'
import type { Packet } from '../protocol/packets.js'

/**
 * Work a connection may do before it pauses for one event-loop turn (the count starts again after
 * each pause): one unit per packet it handles, one per retained message it makes the broker send,
 * and a fraction per delivery of what it publishes (DELIVERY_WORK). libuv reads a busy socket up to 32
 * times per readiness event, so without a budget one client's burst (fanned out to every
 * subscriber, or a SUBSCRIBE to '#' over many retained messages) would hold the loop while
 * timers, keep-alives and other clients wait.
 */
const WORK_BUDGET = 10_000

/**
 * What one delivery of a routed message counts, against 1 for a packet handled: a delivery is a
 * copy into the subscriber's output buffer, while the write it leads to is paid once per
 * subscriber and turn. Counted as a whole unit, a message to 10,000 subscribers spent the budget
 * alone, so every message got its own turn and 10,000 writes; at 1/16 a turn carries 16 of them
 * (bench fanout10k: 99k -> 554k deliveries/s).
 */
const DELIVERY_WORK = 1 / 16

function endYield(flow: InboundFlow): void {
  flow.endYield()
}

/**
 * What InboundFlow calls back into: the connection. One object rather than four callbacks, so an
 * idle connection keeps no closures for them.
 */
export interface FlowOwner {
  /** Handles a packet; a returned promise holds what follows until it settles. */
  handlePacket(packet: Packet): void | Promise<void>
  /** Decodes what the decoder held while handling was paused. */
  decodeHeld(): void
  /** Handling threw or a hook's promise rejected. */
  handlingFailed(error: unknown): void
  /** Reading starts again after a pause (the keep-alive clock restarts). */
  readingResumed(): void
}

/**
 * Decides when a connection's packets are handled, keeping their order. Handling stops, and the
 * socket pauses, while a hook's promise is pending, while the connection's work budget for this
 * turn is spent, and while its write buffer is over the limit (a client that does not read must
 * not make the broker buffer answers without bound). What arrived meanwhile stays undecoded in
 * the decoder until `decodeHeld` is called.
 */
export class InboundFlow {
  private work = 0
  private awaitingHook = false
  private yielding = false
  private writeBlocked = false
  private stopped = false

  constructor(
    private readonly stream: Duplex,
    private readonly owner: FlowOwner,
  ) {}

  private get blocked(): boolean {
    return this.awaitingHook || this.yielding || this.writeBlocked || this.stopped
  }

  /** Whether packets are being read and handled (not held back by a hook, the budget or the write buffer). */
  get reading(): boolean {
    return !this.blocked
  }

  /** Handles a decoded packet; returns false when the decoder must hold what follows. */
  accept(packet: Packet): boolean {
    if (this.stopped) return false
    this.work++
    let pending: void | Promise<void>
    try {
      pending = this.owner.handlePacket(packet)
    } catch (error) {
      this.owner.handlingFailed(error)
      return false
    }
    if (pending !== undefined) {
      this.awaitingHook = true
      this.stream.pause()
      pending.then(
        () => {
          this.awaitingHook = false
          this.unblocked()
        },
        (error: unknown) => this.owner.handlingFailed(error),
      )
    }
    if (this.work >= WORK_BUDGET && !this.yielding) {
      this.yielding = true
      this.stream.pause()
      setImmediate(endYield, this)
    }
    return !this.blocked
  }

  /** Counts messages a handled packet made the broker send (retained messages: encoded one by one). */
  addWork(units: number): void {
    this.work += units
  }

  /** Counts the deliveries a routed PUBLISH made. */
  addDeliveries(count: number): void {
    this.work += count * DELIVERY_WORK
  }

  /** The write buffer went over its limit: stop reading until `writeBufferDrained`. */
  writeBufferFull(): void {
    if (this.writeBlocked || this.stopped) return
    this.writeBlocked = true
    this.stream.pause()
  }

  /** The write buffer is back under its limit: read again. */
  writeBufferDrained(): void {
    if (!this.writeBlocked) return
    this.writeBlocked = false
    this.unblocked()
  }

  /** The connection closed: nothing more is handled. */
  stop(): void {
    this.stopped = true
  }

  endYield(): void {
    this.yielding = false
    this.work = 0
    this.unblocked()
  }

  private unblocked(): void {
    if (this.blocked) return
    this.owner.readingResumed()
    this.owner.decodeHeld()
    if (!this.blocked) this.stream.resume()
  }
}
