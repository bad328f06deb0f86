/**
 * A token bucket: `take(rate)` allows `rate` events per second on average, in bursts of up to one
 * second's worth. It starts full, so a client's first second is never cut short.
 */
export class RateBucket {
  private tokens = Number.NaN
  private stamp = 0

  take(rate: number): boolean {
    const now = Date.now()
    this.tokens = Number.isNaN(this.tokens) ? rate : Math.min(rate, this.tokens + ((now - this.stamp) * rate) / 1000)
    this.stamp = now
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}
