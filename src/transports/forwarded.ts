import { isIP } from 'node:net'
import { plainAddress } from './proxy-protocol.js'

/** One X-Forwarded-For entry as an address: '203.0.113.7', '2001:db8::1', '[2001:db8::1]:443', '203.0.113.7:5000'. */
function entryAddress(entry: string): string | undefined {
  let address = entry.trim()
  if (address.startsWith('[')) {
    const end = address.indexOf(']')
    if (end === -1) return undefined
    address = address.slice(1, end)
  } else if (/^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/.test(address)) {
    address = address.slice(0, address.lastIndexOf(':'))
  }
  return isIP(address) === 0 ? undefined : plainAddress(address)
}

/**
 * The client's address per `X-Forwarded-For`, believed only as far as trusted proxies vouch for
 * it: starting from the socket's peer, while the current address is a trusted proxy, step to the
 * next entry from the right (each proxy appends the address it saw). The answer is the
 * right-most address that is not itself a trusted proxy, or the left-most entry when all are
 * trusted; an entry that is not an IP address stops the walk at the proxy that sent it.
 * Undefined when the header changes nothing: the peer is not trusted, or there is no header.
 */
export function forwardedClient(peer: string | undefined, header: string | undefined, trusted: ReadonlySet<string>): string | undefined {
  let current = plainAddress(peer)
  if (header === undefined || !trusted.has(current)) return undefined
  const entries = header.split(',')
  let moved = false
  for (let i = entries.length - 1; i >= 0 && trusted.has(current); i--) {
    const next = entryAddress(entries[i] as string)
    if (next === undefined) break
    current = next
    moved = true
  }
  return moved ? current : undefined
}
