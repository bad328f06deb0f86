import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'

/** Event-loop delay above which the process counts as stalled (`/healthz` fails). */
export const STALLED_MS = 5_000

/**
 * Watches the event loop's delay (libuv's timer-based sampler, no work on the hot path). The
 * histogram is read and restarted at most every few seconds, so a figure covers recent seconds.
 */
export class EventLoopMonitor {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 })
  private lastReset = Date.now()
  private lastP99 = 0

  constructor() {
    this.histogram.enable()
  }

  /** The p99 delay over the last few seconds, in ms. */
  delayMs(now = Date.now()): number {
    if (this.histogram.count > 0) this.lastP99 = this.histogram.percentile(99) / 1e6
    if (now - this.lastReset > 10_000) {
      this.histogram.reset()
      this.lastReset = now
    }
    return this.lastP99
  }

  stop(): void {
    this.histogram.disable()
  }
}
