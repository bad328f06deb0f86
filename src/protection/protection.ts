import type { AcceptRequest, DisconnectReason } from '../hooks/types.js'
import type { Counters, SocketRefusal } from '../metrics/counters.js'
import type { Ban, ProtectionOptions } from '../options.js'
import { BanList, peerAddress } from './bans.js'
import { FlappingDetector, flappingSettings } from './flapping.js'
import { PerIpLimits, type ClosableSocket } from './per-ip.js'

/** How many entries `Protection` holds, for tests and diagnostics. */
export interface ProtectionSizes {
  /** Bans held (expired ones until the next call drops them). */
  readonly bans: number
  /** Addresses with open connections counted. */
  readonly openAddresses: number
  /** Addresses whose connect-rate bucket has not refilled yet. */
  readonly rateBuckets: number
  /** Client identifiers with connection endings in the flapping window. */
  readonly flappingClients: number
}

/**
 * Limits against abusive clients: bans (client id, user name, address or CIDR, with expiry),
 * per-IP connection caps and rates checked at accept, and flapping detection.
 *
 * It keeps no timer: expired bans, refilled rate buckets and stale flapping windows are dropped
 * as it is used (each call sweeps, at an amortised constant cost), so its maps hold only what is
 * live as of the last call. `sweep()` does the same on demand. All times come from `now`, which
 * tests inject.
 */
export class Protection {
  private readonly bans = new BanList()
  private readonly perIp: PerIpLimits
  private readonly flapping: FlappingDetector | undefined
  private readonly flappingBan: { readonly banMs: number; readonly reason: string }

  /** Throws a TypeError if a ban in `options.bans` names nothing or a bad address. */
  constructor(
    options: ProtectionOptions,
    private readonly counters: Counters,
    private readonly now: () => number = Date.now,
  ) {
    this.perIp = new PerIpLimits(positive(options.maxConnectionsPerIp), positive(options.connectRatePerIp))
    const flapping = flappingSettings(options.flapping)
    this.flapping = flapping === undefined ? undefined : new FlappingDetector(flapping)
    this.flappingBan = {
      banMs: flapping?.banMs ?? 0,
      reason: `flapping: more than ${flapping?.maxDisconnects} connections ended within ${flapping?.windowMs} ms`,
    }
    for (const ban of options.bans ?? []) this.ban(ban)
  }

  /**
   * At accept: the reason to refuse this socket, or null to serve it (then its address counts one
   * more open connection until `socket` closes). Counts refusals in `counters.socketsRefused`
   * (not `socketsAccepted`: the host's `acceptConnection` hook may still refuse the socket).
   *
   * Checks, in order: an address ban ('banned'), the open connections of the address
   * ('per_ip_limit'), its connect rate ('per_ip_rate'). A peer that is not an IP address (a unix
   * socket's path) is never refused here: it has no address to limit.
   */
  admit(request: AcceptRequest, socket: ClosableSocket): SocketRefusal | null {
    const now = this.now()
    this.tidy(now)
    const address = peerAddress(request.remoteAddress)
    if (address === undefined) return null
    const refusal = this.bans.addressBanned(address, now) ? 'banned' : this.perIp.enabled ? this.perIp.admit(address, socket, now) : null
    if (refusal !== null) this.counters.socketsRefused[refusal]++
    return refusal
  }

  /** Whether an address (of a connected client) is banned now, by address or CIDR. */
  addressBanned(remoteAddress: string): boolean {
    const address = peerAddress(remoteAddress)
    return address !== undefined && this.bans.addressBanned(address, this.now())
  }

  /** At CONNECT: the ban on this client identifier or user name, if any. */
  connectBan(clientId: string, username: string | undefined): Ban | undefined {
    return this.bans.connectBan(clientId, username, this.now())
  }

  /**
   * A connected client's connection ended (flapping detection); returns the ban it earned, if any
   * (already in force: the caller only logs it). Endings that are not the client's doing
   * (`server-closing`, `closed-by-host`, the broker's or host's own errors) are not counted.
   */
  clientEnded(clientId: string, reason: DisconnectReason): Ban | undefined {
    if (this.flapping === undefined) return undefined
    const now = this.now()
    this.tidy(now)
    if (!this.flapping.ended(clientId, reason, now)) return undefined
    const ban: Ban = { clientId, until: now + this.flappingBan.banMs, reason: this.flappingBan.reason }
    this.bans.add(ban)
    return { ...ban }
  }

  /**
   * Adds a ban, replacing one for the same client id, user name and address (so repeated bans do
   * not pile up). Throws a TypeError for a ban naming none of them, or an address that is neither
   * an IP address nor a CIDR block.
   */
  ban(ban: Ban): void {
    this.bans.add(ban)
  }

  /**
   * Removes the bans matching every field given: `{ clientId: 'a' }` lifts every ban naming client
   * 'a'; an address matches the same address or block however written (`::ffff:10.0.0.1` is
   * `10.0.0.1`). Returns whether any was removed; a filter naming nothing removes nothing.
   */
  unban(ban: Pick<Ban, 'clientId' | 'username' | 'address'>): boolean {
    return this.bans.removeMatching(ban)
  }

  /** Copies of the bans in force now, oldest first (expired ones are gone). */
  list(): Ban[] {
    return this.bans.list(this.now())
  }

  /** Drops expired bans, refilled rate buckets and flapping windows that have passed, now (calls do it as they go). */
  sweep(): void {
    const now = this.now()
    this.bans.expire(now)
    this.tidy(now)
  }

  /** How many entries each map holds. */
  sizes(): ProtectionSizes {
    const perIp = this.perIp.sizes()
    return { bans: this.bans.size, openAddresses: perIp.open, rateBuckets: perIp.buckets, flappingClients: this.flapping?.size ?? 0 }
  }

  /** The sweeps every call makes: each stops at the first live entry, so they cost next to nothing. */
  private tidy(now: number): void {
    this.perIp.sweep(now)
    this.flapping?.sweep(now)
  }
}

/** A limit from the options: 0 (off) unless a positive number. */
function positive(value: number | undefined): number {
  return value !== undefined && value > 0 ? value : 0
}
