import { isPromise } from '../hooks/promise.js'
import { log } from '../logging.js'
import type { Awaitable, PersistenceAdapter, PersistenceOp } from './adapter.js'

/**
 * An adapter that may hold the acknowledgements of a batch it committed (internal: the cluster
 * store). Called right after each successful commit; the promise it returns delays the
 * acknowledgements of that batch and of every later one, not the commits.
 */
interface AckGate {
  ackGate(): Promise<void> | undefined
}

/** Uncommitted operations past which publishers are no longer read until the store catches up. */
const DEFAULT_MAX_UNCOMMITTED = 100_000

/** How long a failed commit waits before it is tried again, growing up to the maximum. */
const RETRY_FIRST_MS = 50
const RETRY_MAX_MS = 5_000

/**
 * The broker's one path to its persistence adapter. State changes are recorded as operations; at
 * the end of the event-loop turn they go to the adapter as one ordered batch (group commit), with
 * one batch in flight while the next fills. Whoever must not speak before a change is durable
 * (an acknowledgement) waits with `afterCommit`.
 *
 * A failed commit acknowledges nothing that waited for it, and its operations are committed
 * again, ahead of newer ones, until the store takes them: the broker carries on from memory and
 * catches the store up when it returns.
 */
export class Journal {
  /** Whether acknowledgements wait for commits (the adapter's `durable`). */
  readonly durable: boolean
  /** Number of operations ever recorded: a caller compares it before and after a change to learn whether it recorded any. */
  recorded = 0
  /** The number of the batch now filling; a stored message remembers it. */
  batch = 1

  private filling: PersistenceOp[] = []
  private waiting: Array<(ok: boolean) => void> = []
  /** Callbacks for when the filling batch is committed, however many attempts it takes. */
  private drains: Array<() => void> = []
  private inFlight = false
  private inFlightCount = 0
  private inFlightWaiting: Array<(ok: boolean) => void> = []
  private inFlightDrains: Array<() => void> = []
  /** Operations of failed commits, to go ahead of the filling batch. */
  private retry: PersistenceOp[] = []
  private retryTimer: NodeJS.Timeout | undefined
  private retryDelay = 0
  private scheduled = false
  /** Set by `stop()`: nothing more goes to the adapter. */
  private stopped = false
  private relieved: Array<() => void> = []
  /**
   * Acknowledgements of committed batches still held by an adapter's gate (a cluster node's
   * batch that gave it new routes waits for the other nodes to apply them); later ones queue
   * behind them, so acknowledgements keep their order. Commits go on meanwhile.
   */
  private gated = 0
  /** Bumped by `discard()`: a batch sent before it is not tried again. */
  private generation = 0
  private gateChain: Promise<void> = Promise.resolve()

  constructor(
    private readonly adapter: PersistenceAdapter,
    private readonly failed: (error: Error) => void,
    private readonly maxUncommitted = DEFAULT_MAX_UNCOMMITTED,
  ) {
    this.durable = adapter.durable
  }

  /** Operations recorded and not yet committed. */
  get uncommitted(): number {
    return this.filling.length + this.inFlightCount + this.retry.length
  }

  /** Whether so much waits for the store that publishers should wait too. */
  get overloaded(): boolean {
    return this.uncommitted > this.maxUncommitted
  }

  record(op: PersistenceOp): void {
    this.filling.push(op)
    this.recorded++
    if (!this.scheduled && !this.inFlight && this.retryTimer === undefined && !this.stopped) {
      this.scheduled = true
      // Everything recorded in this turn goes in one batch.
      setImmediate(this.flush)
    }
  }

  /**
   * Runs `then(true)` once everything recorded so far is committed, at once if it is (or the
   * adapter is not durable); `then(false)` if the commit holding it failed. Callbacks run in the
   * order they were registered.
   */
  afterCommit(then: (ok: boolean) => void): void {
    if (!this.durable) return then(true)
    if (this.filling.length > 0 || this.retry.length > 0) this.waiting.push(then)
    else if (this.inFlight) this.inFlightWaiting.push(then)
    else if (this.gated > 0) this.release([then])
    else then(true)
  }

  /** Runs acknowledgement callbacks of a committed batch, behind any gate still holding earlier ones. */
  private release(waiting: Array<(ok: boolean) => void>, gate?: Promise<void>): void {
    if (gate === undefined && this.gated === 0) {
      for (const then of waiting) then(true)
      return
    }
    this.gated++
    const run = (): void => {
      this.gated--
      for (const then of waiting) then(true)
    }
    this.gateChain = this.gateChain.then(() => gate).then(run, run)
  }

  /** Runs `then` once everything recorded so far is committed, however many attempts that takes. */
  whenCommitted(then: () => void): void {
    if (!this.durable) return then()
    if (this.filling.length > 0 || this.retry.length > 0) this.drains.push(then)
    else if (this.inFlight) this.inFlightDrains.push(then)
    else then()
  }

  /** Resolves when the journal is no longer overloaded. */
  relief(): Promise<void> {
    if (!this.overloaded) return Promise.resolve()
    return new Promise((resolve) => this.relieved.push(resolve))
  }

  /**
   * Commits what is recorded now, waits for everything to be committed, and rejects if the store
   * fails (shutdown: a failing store is tried once more, not waited for).
   */
  async settle(): Promise<void> {
    for (;;) {
      if (this.retryTimer !== undefined) {
        clearTimeout(this.retryTimer)
        this.retryTimer = undefined
      }
      if (this.uncommitted === 0 && !this.inFlight) return
      const ok = await new Promise<boolean>((resolve) => {
        this.afterCommit(resolve)
        if (!this.inFlight) this.flush()
      })
      if (!ok) throw new Error('persistence: the store refused the last changes')
    }
  }

  /**
   * Drops every operation not committed yet, and a batch in flight if it fails: their
   * acknowledgements fail, their drains run. For a cluster node that lost its lease, whose
   * changes the store refuses for good (it starts again from what the store holds).
   */
  discard(): void {
    this.generation++
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    this.retryDelay = 0
    const waiting = this.waiting
    const drains = this.drains
    this.filling = []
    this.retry = []
    this.waiting = []
    this.drains = []
    for (const then of waiting) then(false)
    for (const then of drains) then()
  }

  /** Stops every timer and commit: the broker closed, its adapter is the next broker's. */
  stop(): void {
    this.stopped = true
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer)
    this.retryTimer = undefined
  }

  private readonly flush = (): void => {
    this.scheduled = false
    this.retryTimer = undefined
    if (this.stopped || this.inFlight || (this.filling.length === 0 && this.retry.length === 0)) return
    const ops = this.retry.length === 0 ? this.filling : this.retry.concat(this.filling)
    this.batch++
    this.retry = []
    this.filling = []
    this.inFlight = true
    this.inFlightCount = ops.length
    this.inFlightWaiting = this.waiting
    this.inFlightDrains = this.drains
    this.waiting = []
    this.drains = []
    const generation = this.generation
    let result: Awaitable<void>
    try {
      result = this.adapter.commit(ops)
    } catch (error) {
      this.settled(ops, error, generation)
      return
    }
    if (isPromise(result)) {
      result.then(
        () => this.settled(ops, undefined, generation),
        (error: unknown) => this.settled(ops, error ?? new Error('commit rejected'), generation),
      )
    } else {
      this.settled(ops, undefined, generation)
    }
  }

  private settled(ops: PersistenceOp[], failure: unknown, generation: number): void {
    // A batch of before `discard()` that failed is dropped, not tried again.
    const error = failure !== undefined && generation !== this.generation ? undefined : failure
    const dropped = failure !== undefined && error === undefined
    const waiting = this.inFlightWaiting
    const drains = this.inFlightDrains
    this.inFlight = false
    this.inFlightCount = 0
    this.inFlightWaiting = []
    this.inFlightDrains = []
    if (error === undefined) {
      if (this.retryDelay > 0) log.persistence('The store took the changes again; acknowledgements resume')
      this.retryDelay = 0
      if (dropped) for (const then of waiting) then(false)
      else this.release(waiting, (this.adapter as Partial<AckGate>).ackGate?.())
      for (const then of drains) then()
    } else {
      // Nothing of the batch is known stored: it goes again, ahead of what was recorded since,
      // after a pause armed before anyone is told (what they record must not go at once).
      this.retry = ops
      this.drains = drains.concat(this.drains)
      this.retryDelay = Math.min(this.retryDelay === 0 ? RETRY_FIRST_MS : this.retryDelay * 2, RETRY_MAX_MS)
      if (!this.stopped) {
        this.retryTimer = setTimeout(this.flush, this.retryDelay)
        this.retryTimer.unref()
      }
      const failure = error instanceof Error ? error : new Error(String(error))
      log.error('persistence commit of %d operations failed (trying again in %d ms): %s', ops.length, this.retryDelay, failure.message)
      for (const then of waiting) then(false)
      this.failed(failure)
    }
    if (!this.overloaded && this.relieved.length > 0) {
      const relieved = this.relieved
      this.relieved = []
      for (const resolve of relieved) resolve()
    }
    // What accumulated while the batch was in flight goes now, as one batch.
    if (this.retry.length === 0 && this.filling.length > 0 && !this.inFlight) this.flush()
  }
}
