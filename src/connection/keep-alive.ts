function check(keepAlive: KeepAlive): void {
  keepAlive.check()
}

/** What a KeepAlive watches: the connection. */
export interface KeepAliveOwner {
  /** The keep alive ran out: close the connection. */
  keepAliveExpired(): void
  /** Whether the broker is reading the connection's packets now. */
  readonly readingPackets: boolean
}

/**
 * Closes a silent connection once 1.5 times its keep alive has passed without a packet
 * [MQTT-3.1.2-24]. Activity only records a timestamp; the single timer re-arms itself for the
 * time that is left, so a busy connection costs no timer churn and an idle one is cut on time.
 * While the broker is not reading the connection (`readingPackets` false), the client's packets wait
 * unread, so its silence does not count: the clock starts again.
 */
export class KeepAlive {
  private timer: NodeJS.Timeout | undefined
  private limitMs = 0
  /** When the client last sent something (Date.now()): also the receive time of the packets it carried. */
  lastActivity = 0

  constructor(private readonly owner: KeepAliveOwner) {}

  /** Starts watching; a keep alive of 0 disables the check. */
  start(keepAliveSeconds: number): void {
    this.stop()
    if (keepAliveSeconds <= 0) return
    this.limitMs = keepAliveSeconds * 1500
    this.lastActivity = Date.now()
    this.arm(this.limitMs)
  }

  touch(): void {
    this.lastActivity = Date.now()
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
  }

  private arm(ms: number): void {
    // A shared function and an argument: no closure per connection.
    this.timer = setTimeout(check, ms, this)
    this.timer.unref?.()
  }

  /** @internal the timer's callback */
  check(): void {
    if (!this.owner.readingPackets) this.touch()
    const idle = Date.now() - this.lastActivity
    if (idle >= this.limitMs) {
      this.timer = undefined
      this.owner.keepAliveExpired()
    } else {
      this.arm(this.limitMs - idle)
    }
  }
}
