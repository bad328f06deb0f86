import type { DisconnectReason } from '../hooks/types.js'
import type { FlappingOptions } from '../options.js'

/** The defaults of EMQX's `flapping_detect`. */
export const FLAPPING_DEFAULTS: Readonly<Required<FlappingOptions>> = { maxDisconnects: 15, windowMs: 60_000, banMs: 300_000 }

/**
 * Endings that are not the client's doing (the broker or the host ended it, or failed): a store
 * outage that drops every client must not get them all banned when they come back.
 */
const NOT_THE_CLIENTS: ReadonlySet<DisconnectReason> = new Set<DisconnectReason>(['server-closing', 'closed-by-host', 'internal-error', 'persistence-error', 'hook-error'])

/** The flapping settings in force, or undefined when detection is off. */
export function flappingSettings(option: FlappingOptions | boolean | undefined): Required<FlappingOptions> | undefined {
  if (option === undefined || option === false) return undefined
  const given = option === true ? {} : option
  return {
    maxDisconnects: given.maxDisconnects ?? FLAPPING_DEFAULTS.maxDisconnects,
    windowMs: given.windowMs ?? FLAPPING_DEFAULTS.windowMs,
    banMs: given.banMs ?? FLAPPING_DEFAULTS.banMs,
  }
}

/**
 * Counts, per client identifier, the connections that ended within the last `windowMs` (a
 * sliding window of timestamps, at most `maxDisconnects + 1` of them per client). The map is kept
 * in order of last ending (deleted and re-inserted on each), so `sweep` drops the clients whose
 * last ending left the window from the front, and stops at the first that has not.
 */
export class FlappingDetector {
  private readonly ends = new Map<string, number[]>()

  constructor(private readonly settings: Required<FlappingOptions>) {}

  /**
   * Records that a connection of `clientId` ended; true when that makes more than
   * `maxDisconnects` within `windowMs`: the caller bans the client id, and its count starts again.
   */
  ended(clientId: string, reason: DisconnectReason, now: number): boolean {
    if (NOT_THE_CLIENTS.has(reason)) return false
    const since = now - this.settings.windowMs
    const times = (this.ends.get(clientId) ?? []).filter((t) => t > since)
    times.push(now)
    this.ends.delete(clientId)
    if (times.length > this.settings.maxDisconnects) return true
    this.ends.set(clientId, times)
    return false
  }

  /** Drops the clients whose last ending is older than the window. */
  sweep(now: number): void {
    const since = now - this.settings.windowMs
    for (const [clientId, times] of this.ends) {
      if ((times[times.length - 1] ?? 0) > since) break
      this.ends.delete(clientId)
    }
  }

  /** Clients with endings in the window. */
  get size(): number {
    return this.ends.size
  }
}
