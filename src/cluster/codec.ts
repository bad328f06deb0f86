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

/** One forwarded message, as it goes into an inbox entry (entries for one node are concatenated). */
export function encodeForwardEntry(message: StoredMessage, share?: string): Buffer {
  const value = encodeMessage(message, message.receivedAt)
  const group = share === undefined ? EMPTY : Buffer.from(share)
  const out = Buffer.allocUnsafe(8 + group.length + value.length)
  out.writeUInt32LE(group.length, 0)
  out.writeUInt32LE(value.length, 4)
  group.copy(out, 8)
  value.copy(out, 8 + group.length)
  return out
}

const EMPTY = Buffer.alloc(0)

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
