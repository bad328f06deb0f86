/**
 * Mock time for the tests of protocol timers (keep alive, session and message expiry, will delay,
 * connect timeout, publish rate). The broker schedules them with the global `setTimeout` and
 * reads `Date.now()`, so node:test mock timers drive them: the test moves the clock with `tick`,
 * and the timers due fire synchronously inside it. Nothing depends on the machine's speed.
 *
 * Enable it before starting the broker and its clients. `setImmediate` and `setInterval` stay
 * real: the broker yields with setImmediate, and `mqtt` clients ping with setInterval. The waits
 * of the helpers (wait.ts) keep real deadlines. A mocked `setTimeout` never fires on its own, so
 * prefer raw clients: an `mqtt` client's `end()` with messages in flight waits on one.
 */
import type { TestContext } from 'node:test'

/** Where the mocked clock starts (any fixed instant would do). */
export const MOCK_EPOCH = Date.UTC(2026, 0, 1)

export interface MockClock {
  /** Moves the clock on by `ms`, running the timers due on the way. */
  tick(ms: number): void
  /** The mocked Date.now(). */
  now(): number
}

/** Mocks `setTimeout` and `Date` (from MOCK_EPOCH) for the rest of test `t`; node:test restores them after it. */
export function mockClock(t: TestContext): MockClock {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: MOCK_EPOCH })
  return {
    tick: (ms) => t.mock.timers.tick(ms),
    now: () => Date.now(),
  }
}
