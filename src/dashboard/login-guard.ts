/**
 * What keeps the dashboard's HTTP Basic checks cheap and hard to brute-force: browsers send the
 * credentials with every request (the page polls), and each check may run a slow password hash
 * (argon2id, PBKDF2) that MQTT logins wait behind. So an accepted `Authorization` header is
 * remembered for a few seconds, and an address that keeps failing is refused for a while without
 * a check.
 */
import { createHash } from 'node:crypto'

/** How long an accepted `Authorization` header is trusted without a new check. */
export const ACCEPTED_TTL_MS = 10_000
/** Failed checks an address may make within {@link FAILURE_WINDOW_MS} before it must wait. */
export const MAX_FAILURES = 10
/** The window failures are counted over, and how long an address that went over waits. */
export const FAILURE_WINDOW_MS = 60_000
/** Entries kept at most in each table; beyond it the oldest go (a flood from many addresses). */
const MAX_ENTRIES = 10_000

/** The remembered decisions and failure counts of one dashboard handler. */
export class LoginGuard {
  /** sha256 of an accepted `Authorization` header -> until when it is trusted. */
  private readonly accepted = new Map<string, number>()
  /** Address -> failures in the current window, and when the window ends. */
  private readonly failures = new Map<string, { count: number; until: number }>()

  constructor(private readonly now: () => number = Date.now) {}

  /** Whether this header was accepted a moment ago. */
  wasAccepted(authorization: string): boolean {
    const key = digest(authorization)
    const until = this.accepted.get(key)
    if (until === undefined) return false
    if (until > this.now()) return true
    this.accepted.delete(key)
    return false
  }

  /** Ms the address must still wait before its credentials are checked again, or 0. */
  retryAfterMs(address: string): number {
    const entry = this.failures.get(address)
    if (entry === undefined) return 0
    const left = entry.until - this.now()
    if (left <= 0) {
      this.failures.delete(address)
      return 0
    }
    return entry.count >= MAX_FAILURES ? left : 0
  }

  /** Records a check's outcome. */
  record(address: string, authorization: string, accepted: boolean): void {
    const now = this.now()
    if (accepted) {
      this.failures.delete(address)
      bounded(this.accepted).set(digest(authorization), now + ACCEPTED_TTL_MS)
      return
    }
    const entry = this.failures.get(address)
    if (entry === undefined || entry.until <= now) bounded(this.failures).set(address, { count: 1, until: now + FAILURE_WINDOW_MS })
    else {
      entry.count++
      // Over the limit: the wait starts from the last failure.
      if (entry.count >= MAX_FAILURES) entry.until = now + FAILURE_WINDOW_MS
    }
  }

  /** Forgets every accepted header (credentials or administrators changed). */
  forgetAccepted(): void {
    this.accepted.clear()
  }
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('base64')
}

/** The map, with its oldest entry dropped when it is full. */
function bounded<K, V>(map: Map<K, V>): Map<K, V> {
  if (map.size >= MAX_ENTRIES) {
    const oldest = map.keys().next()
    if (oldest.done !== true) map.delete(oldest.value)
  }
  return map
}
