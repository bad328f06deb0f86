import type { AcceptRequest, DisconnectReason } from '../hooks/types.js'
import type { Counters, SocketRefusal } from '../metrics/counters.js'
import type { Ban, ProtectionOptions } from '../options.js'

/**
 * Limits against abusive clients: bans (client id, user name, address or CIDR, with expiry),
 * per-IP connection caps and rates checked at accept, and flapping detection.
 * SKELETON: the full implementation is in progress.
 */
export class Protection {
  private readonly banned: Ban[] = []

  constructor(
    options: ProtectionOptions,
    private readonly counters: Counters,
    private readonly now: () => number = Date.now,
  ) {
    for (const ban of options.bans ?? []) this.ban(ban)
  }

  /**
   * At accept: the reason to refuse this socket, or null to serve it (then its address counts one
   * more open connection until `socket` closes). Counts refusals in `counters.socketsRefused`.
   */
  admit(request: AcceptRequest, socket: { once(event: 'close', listener: () => void): unknown }): SocketRefusal | null {
    void request
    void socket
    return null
  }

  /** At CONNECT: the ban on this client identifier or user name, if any. */
  connectBan(clientId: string, username: string | undefined): Ban | undefined {
    const now = this.now()
    return this.banned.find((b) => (b.until === undefined || b.until > now) && ((b.clientId !== undefined && b.clientId === clientId) || (b.username !== undefined && b.username === username)))
  }

  /** A connected client's connection ended (flapping detection); returns the ban it earned, if any. */
  clientEnded(clientId: string, reason: DisconnectReason): Ban | undefined {
    void clientId
    void reason
    return undefined
  }

  ban(ban: Ban): void {
    this.banned.push({ ...ban })
  }

  unban(ban: Pick<Ban, 'clientId' | 'username' | 'address'>): boolean {
    void ban
    return false
  }

  list(): Ban[] {
    const now = this.now()
    return this.banned.filter((b) => b.until === undefined || b.until > now).map((b) => ({ ...b }))
  }
}
