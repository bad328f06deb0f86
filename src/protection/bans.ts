import net from 'node:net'
import type { Ban } from '../options.js'
import { plainAddress } from '../transports/proxy-protocol.js'

/** An address or CIDR block in one canonical form, so that equal blocks compare equal. */
export interface AddressBlock {
  /** The canonical address: lower case, IPv6 compressed, IPv4-mapped IPv6 folded to IPv4. */
  readonly address: string
  readonly family: 'ipv4' | 'ipv6'
  /** The prefix length; the family's full length for a single address. */
  readonly prefix: number
  /** `address` or `address/prefix`: how the block compares with another. */
  readonly text: string
}

/**
 * A peer address as sockets report it, in the form bans match: without an IPv6 zone
 * (`fe80::1%eth0`), IPv4-mapped IPv6 as IPv4. Undefined when it is not an IP address (a unix
 * socket's path, or a socket closed before its address was read).
 */
export function peerAddress(address: string | undefined): string | undefined {
  if (address === undefined) return undefined
  const zone = address.indexOf('%')
  const bare = plainAddress(zone === -1 ? address : address.slice(0, zone))
  return net.isIP(bare) === 0 ? undefined : bare
}

/**
 * Parses an address (`10.0.0.1`, `2001:db8::1`, `::ffff:10.0.0.1`) or a CIDR block
 * (`10.0.0.0/8`, `2001:db8::/32`). Throws a TypeError for anything else.
 */
export function parseAddressBlock(input: string): AddressBlock {
  const slash = input.indexOf('/')
  const head = (slash === -1 ? input : input.slice(0, slash)).trim()
  const version = net.isIP(head)
  if (version === 0) throw new TypeError(`ban: ${JSON.stringify(input)} is not an IP address or CIDR block`)
  let family: 'ipv4' | 'ipv6' = version === 4 ? 'ipv4' : 'ipv6'
  const full = family === 'ipv4' ? 32 : 128
  let prefix = full
  if (slash !== -1) {
    const digits = input.slice(slash + 1).trim()
    prefix = /^\d{1,3}$/.test(digits) ? Number(digits) : Number.NaN
    if (!(prefix >= 0 && prefix <= full)) throw new TypeError(`ban: ${JSON.stringify(input)} has a bad prefix length`)
  }
  // SocketAddress gives the canonical text ('2001:DB8:0::1' -> '2001:db8::1').
  let address = new net.SocketAddress({ address: head, family }).address
  // An IPv4-mapped block is the IPv4 block it maps (BlockList matches both forms either way;
  // this only makes `unban('::ffff:10.0.0.1')` find the ban on '10.0.0.1').
  const folded = plainAddress(address)
  if (family === 'ipv6' && folded !== address && prefix >= 96) {
    address = folded
    family = 'ipv4'
    prefix -= 96
  }
  const text = prefix === (family === 'ipv4' ? 32 : 128) ? address : `${address}/${prefix}`
  return { address, family, prefix, text }
}

interface Entry {
  /** The ban as it was given (copied), for `list()`. */
  readonly ban: Ban
  /** Its identity: a ban for the same client id, user name and address replaces it. */
  readonly key: string
  readonly block: AddressBlock | undefined
}

function identity(clientId: string | undefined, username: string | undefined, block: AddressBlock | undefined): string {
  return JSON.stringify([clientId ?? null, username ?? null, block?.text ?? null])
}

const live = (entry: Entry, now: number): boolean => entry.ban.until === undefined || entry.ban.until > now

/**
 * The bans in force. Client identifiers and user names are looked up in maps (CONNECT asks for
 * every client); addresses are matched by one `net.BlockList`, rebuilt when an address ban comes
 * or goes (a BlockList cannot remove a rule). Expired bans are dropped when the earliest expiry
 * has passed, on the next call.
 */
export class BanList {
  private readonly entries = new Map<string, Entry>()
  private readonly byClientId = new Map<string, Set<Entry>>()
  private readonly byUsername = new Map<string, Set<Entry>>()
  private blocks = new net.BlockList()
  private addressBans = 0
  /** The earliest `until` among the entries: nothing expires before it. */
  private nextExpiry = Number.POSITIVE_INFINITY

  /** Adds a ban, replacing one for the same client id, user name and address. Throws a TypeError for a ban that names nothing or a bad address. */
  add(ban: Ban): void {
    const named = [ban.clientId, ban.username, ban.address].filter((field) => field !== undefined).length
    // One target per ban: `{ clientId, address }` would read as "this client from there" but act as "either".
    if (named !== 1) throw new TypeError('ban: name exactly one of clientId, username or address')
    const block = ban.address === undefined ? undefined : parseAddressBlock(ban.address)
    const entry: Entry = { ban: { ...ban }, key: identity(ban.clientId, ban.username, block), block }
    const old = this.entries.get(entry.key)
    if (old !== undefined) this.remove(old)
    this.entries.set(entry.key, entry)
    if (ban.clientId !== undefined) index(this.byClientId, ban.clientId, entry)
    if (ban.username !== undefined) index(this.byUsername, ban.username, entry)
    if (ban.until !== undefined) this.nextExpiry = Math.min(this.nextExpiry, ban.until)
    if (block !== undefined) {
      if (old?.block !== undefined) this.rebuild()
      else {
        this.blocks.addSubnet(block.address, block.prefix, block.family)
        this.addressBans++
      }
    }
  }

  /**
   * Removes the bans matching every field given (`{ clientId: 'a' }` removes the ban on client 'a'
   * whatever else it names); returns whether any was removed. A filter naming nothing removes nothing.
   */
  removeMatching(filter: Pick<Ban, 'clientId' | 'username' | 'address'>): boolean {
    if (filter.clientId === undefined && filter.username === undefined && filter.address === undefined) return false
    let blockText: string | undefined
    if (filter.address !== undefined) {
      try {
        blockText = parseAddressBlock(filter.address).text
      } catch {
        return false
      }
    }
    const doomed = [...this.entries.values()].filter(
      (e) =>
        (filter.clientId === undefined || e.ban.clientId === filter.clientId) &&
        (filter.username === undefined || e.ban.username === filter.username) &&
        (blockText === undefined || e.block?.text === blockText),
    )
    for (const entry of doomed) this.remove(entry)
    if (doomed.some((e) => e.block !== undefined)) this.rebuild()
    return doomed.length > 0
  }

  /** Whether sockets from `address` (as {@link peerAddress} gives it) are banned now. */
  addressBanned(address: string, now: number): boolean {
    this.expire(now)
    if (this.addressBans === 0) return false
    try {
      return this.blocks.check(address, net.isIP(address) === 4 ? 'ipv4' : 'ipv6')
    } catch {
      return false
    }
  }

  /** The live ban on this client identifier or user name, if any. */
  connectBan(clientId: string, username: string | undefined, now: number): Ban | undefined {
    this.expire(now)
    const found = first(this.byClientId.get(clientId)) ?? (username === undefined ? undefined : first(this.byUsername.get(username)))
    return found === undefined ? undefined : { ...found.ban }
  }

  /** Copies of the live bans, oldest first. */
  list(now: number): Ban[] {
    this.expire(now)
    return [...this.entries.values()].map((e) => ({ ...e.ban }))
  }

  /** How many bans are held (expired ones included until the next call drops them). */
  get size(): number {
    return this.entries.size
  }

  /** Drops the bans whose `until` has passed; cheap unless one has. */
  expire(now: number): void {
    if (now < this.nextExpiry) return
    let next = Number.POSITIVE_INFINITY
    let blocksGone = false
    for (const entry of [...this.entries.values()]) {
      if (live(entry, now)) {
        if (entry.ban.until !== undefined) next = Math.min(next, entry.ban.until)
        continue
      }
      this.remove(entry)
      blocksGone ||= entry.block !== undefined
    }
    this.nextExpiry = next
    if (blocksGone) this.rebuild()
  }

  private remove(entry: Entry): void {
    this.entries.delete(entry.key)
    if (entry.ban.clientId !== undefined) unindex(this.byClientId, entry.ban.clientId, entry)
    if (entry.ban.username !== undefined) unindex(this.byUsername, entry.ban.username, entry)
  }

  private rebuild(): void {
    this.blocks = new net.BlockList()
    this.addressBans = 0
    for (const { block } of this.entries.values()) {
      if (block === undefined) continue
      this.blocks.addSubnet(block.address, block.prefix, block.family)
      this.addressBans++
    }
  }
}

function index(map: Map<string, Set<Entry>>, key: string, entry: Entry): void {
  const set = map.get(key)
  if (set === undefined) map.set(key, new Set([entry]))
  else set.add(entry)
}

function unindex(map: Map<string, Set<Entry>>, key: string, entry: Entry): void {
  const set = map.get(key)
  if (set === undefined) return
  set.delete(entry)
  if (set.size === 0) map.delete(key)
}

function first(set: Set<Entry> | undefined): Entry | undefined {
  if (set === undefined) return undefined
  for (const entry of set) return entry
  return undefined
}
