/**
 * Waiting, the one way: `until` re-checks a condition whenever a `Waiters` it watches is notified
 * (or, with nothing to watch, every few milliseconds) and gives up only at a generous deadline,
 * which is a guard against hangs, never the thing a test measures.
 *
 * Every deadline here runs on the real clock, captured when this module loads: a test that mocks
 * `setTimeout` and `Date` (node:test `mock.timers`) to drive the broker's protocol timers still
 * gets its guards, since a mocked deadline would never fire.
 */
import type { Broker, Client, DisconnectReason } from '../../src/index.js'

const realSetTimeout = globalThis.setTimeout
const realClearTimeout = globalThis.clearTimeout
/** Milliseconds on a clock that node:test mock timers do not touch. */
const now = (): number => performance.now()

/** How long a wait may take before it fails the test: a guard for a machine under load, not a measure. */
export const DEFAULT_WAIT_MS = 5000
/** Without a `Waiters` to wake it, `until` re-checks this often. */
const POLL_MS = 5

/** A timer on the real clock, whatever node:test mock timers do to the global one. */
export function realTimer(ms: number, f: () => void): { cancel(): void } {
  const t = realSetTimeout(f, ms)
  return { cancel: () => realClearTimeout(t) }
}

/** Wakes whoever waits in `until` (or `next`) each time `notify` is called. */
export class Waiters {
  private waiting: Array<() => void> = []

  notify(): void {
    const w = this.waiting
    this.waiting = []
    for (const f of w) f()
  }

  /** Resolves at the next `notify`, or after `ms` at most (real time). */
  next(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = realTimer(ms, resolve)
      this.waiting.push(() => {
        timer.cancel()
        resolve()
      })
    })
  }

  /** `until(predicate, ...)`, re-checked whenever this is notified. */
  until(predicate: () => boolean, ms: number = DEFAULT_WAIT_MS, what: string | (() => string) = 'condition', giveUp?: () => boolean): Promise<void> {
    return until(predicate, ms, what, { wake: this, giveUp })
  }
}

export interface UntilOptions {
  /** Re-check when this is notified (otherwise: poll). */
  wake?: Waiters | undefined
  /** Fail at once, without waiting out the deadline, as soon as this holds. */
  giveUp?: (() => boolean) | undefined
}

/**
 * Waits until `predicate` holds. Fails with "timed out ... waiting for `what`" after `ms` (real
 * time), or as soon as `giveUp` holds. A predicate that throws fails the wait with its error.
 */
export async function until(
  predicate: () => boolean,
  ms: number = DEFAULT_WAIT_MS,
  what: string | (() => string) = 'condition',
  options: UntilOptions = {},
): Promise<void> {
  const describe = (): string => (typeof what === 'string' ? what : what())
  const deadline = now() + ms
  while (!predicate()) {
    if (options.giveUp?.()) throw new Error(`gave up waiting for ${describe()}`)
    const left = deadline - now()
    if (left <= 0) throw new Error(`timed out after ${ms} ms waiting for ${describe()}`)
    if (options.wake) await options.wake.next(left)
    else await new Promise<void>((resolve) => realTimer(Math.min(left, POLL_MS), resolve))
  }
}

/** Waits for one event of `emitter` and returns its arguments; fails after `ms`. */
export function once<T extends unknown[]>(
  emitter: { once(event: string, f: (...args: T) => void): unknown; off?(event: string, f: (...args: T) => void): unknown },
  event: string,
  ms: number = DEFAULT_WAIT_MS,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const listener = (...args: T): void => {
      timer.cancel()
      resolve(args)
    }
    const timer = realTimer(ms, () => {
      emitter.off?.(event, listener)
      reject(new Error(`timed out after ${ms} ms waiting for ${event}`))
    })
    emitter.once(event, listener)
  })
}

/** Resolves when the broker reports that client `id` went away, with the client and the reason. */
export function disconnected(b: { broker: Broker }, id: string, ms: number = DEFAULT_WAIT_MS): Promise<[Client, DisconnectReason]> {
  return new Promise((resolve, reject) => {
    const onDisconnect = (client: Client, reason: DisconnectReason): void => {
      if (client.id !== id) return
      timer.cancel()
      b.broker.off('clientDisconnect', onDisconnect)
      resolve([client, reason])
    }
    const timer = realTimer(ms, () => {
      b.broker.off('clientDisconnect', onDisconnect)
      reject(new Error(`timed out after ${ms} ms waiting for ${id} to disconnect`))
    })
    b.broker.on('clientDisconnect', onDisconnect)
  })
}

/** `disconnected`, for the reason alone. */
export async function gone(b: { broker: Broker }, id: string, ms: number = DEFAULT_WAIT_MS): Promise<DisconnectReason> {
  return (await disconnected(b, id, ms))[1]
}

/** One turn of the event loop (setImmediate, which tests never mock). */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/** A promise with its `resolve` outside: a gate a test opens when it chooses (a slow hook's answer, say). */
export function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}
