/**
 * The messages one batch forwards to one node, as one inbox entry: per message, the shared
 * subscription group it is for (empty: every ordinary subscription) and the message as the Redis
 * adapter stores it (`encodeMessage`), each behind its 32-bit length. Internal.
 */
import type { StoredMessage } from '../persistence/adapter.js'
import { decodeStoredMessage, encodeMessage } from '../persistence/redis/codec.js'

/** One forwarded message: for ordinary subscriptions, or for one shared group (`$share/{name}/{filter}`). */
export interface Forwarded {
  message: StoredMessage
  share?: string
}

export function encodeForward(entries: readonly Forwarded[]): Buffer {
  const parts: Buffer[] = []
  for (const { message, share } of entries) {
    const value = encodeMessage(message, message.receivedAt)
    const group = Buffer.from(share ?? '')
    const head = Buffer.allocUnsafe(8)
    head.writeUInt32LE(group.length, 0)
    head.writeUInt32LE(value.length, 4)
    parts.push(head, group, value)
  }
  return Buffer.concat(parts)
}

export function decodeForward(blob: Buffer): Forwarded[] {
  const out: Forwarded[] = []
  let at = 0
  while (at + 8 <= blob.length) {
    const groupSize = blob.readUInt32LE(at)
    const size = blob.readUInt32LE(at + 4)
    at += 8
    if (at + groupSize + size > blob.length) throw new Error('inbox entry truncated')
    const share = blob.toString('utf8', at, at + groupSize)
    at += groupSize
    const message = decodeStoredMessage(blob.subarray(at, at + size))
    at += size
    out.push(share === '' ? { message } : { message, share })
  }
  return out
}
