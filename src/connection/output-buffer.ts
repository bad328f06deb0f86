import type { Duplex } from 'node:stream'
import { COPIED_PACKET_MAX } from '../session/routed-message.js'

/** The first buffer of a turn: small enough to come from Node's shared pool (under 4 KiB). */
const FIRST_SIZE = 1024
/** Buffers grow, for a connection that receives much per turn, up to this. */
const MAX_SIZE = 64 * 1024

/**
 * The small packets a connection sends during one event-loop turn, copied into one buffer and
 * handed to the stream in one write when the turn's work is done. Measured against a
 * `stream.write` per packet under cork: a write per packet costs a request object, a callback
 * and a slot in writev's array, which for a subscriber receiving hundreds of small packets per
 * turn outweighed the copy; over WebSocket it also made every packet its own frame.
 *
 * Nothing is held between turns: an idle connection keeps no buffer. Each turn's buffer is sized
 * from the last one's use, so a busy subscriber gets one large buffer and a quiet one a slice of
 * Node's pool.
 */
export class OutputBuffer {
  private buffer: Buffer | null = null
  private length = 0
  private size = FIRST_SIZE

  constructor(private readonly stream: Duplex) {}

  /** Bytes appended and not yet handed to the stream. */
  get pending(): number {
    return this.length
  }

  /** Copies `bytes` (at most COPIED_PACKET_MAX long) in. */
  append(bytes: Buffer): void {
    const at = this.reserve(bytes.length)
    ;(this.buffer as Buffer).set(bytes, at)
  }

  /**
   * Copies a QoS 1/2 PUBLISH in with its own packet identifier and DUP flag (`idOffset`: where
   * the identifier is in `template`).
   */
  appendPublish(template: Buffer, idOffset: number, packetId: number, dup: boolean): void {
    const at = this.reserve(template.length)
    ;(this.buffer as Buffer).set(template, at)
    this.setPacketId(at, idOffset, packetId, dup)
  }

  /**
   * Copies a 3.1/3.1.1 PUBLISH as it was received: the `before` bytes preceding `payload` in
   * `wire` (the read buffer `payload` views), then the payload. For QoS 1/2 it gets its own packet
   * identifier (the last two bytes before the payload) and DUP flag. No view of `wire` is made.
   */
  appendReceived(wire: Buffer, before: number, payload: Buffer, qos: number, packetId: number, dup: boolean): void {
    const at = this.reserve(before + payload.length)
    const buffer = this.buffer as Buffer
    let from = payload.byteOffset - wire.byteOffset - before
    for (let i = at, end = at + before; i < end; i++) buffer[i] = wire[from++] as number
    buffer.set(payload, at + before)
    if (qos !== 0) this.setPacketId(at, before - 2, packetId, dup)
  }

  /** The packet identifier and DUP flag of the PUBLISH copied in at `at`. */
  private setPacketId(at: number, idOffset: number, packetId: number, dup: boolean): void {
    const buffer = this.buffer as Buffer
    buffer[at] = dup ? (buffer[at] as number) | 8 : (buffer[at] as number) & ~8
    buffer[at + idOffset] = packetId >> 8
    buffer[at + idOffset + 1] = packetId & 0xff
  }

  /** A two-byte-body acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP without reason code). */
  appendAck(first: number, packetId: number): void {
    const at = this.reserve(4)
    const buffer = this.buffer as Buffer
    buffer[at] = first
    buffer[at + 1] = 2
    buffer[at + 2] = packetId >> 8
    buffer[at + 3] = packetId & 0xff
  }

  /** Hands what was appended to the stream; `callback` as `stream.write`'s. */
  flush(callback?: () => void): void {
    const buffer = this.buffer
    if (buffer === null) return
    const length = this.length
    this.buffer = null
    this.length = 0
    // Next turn's first buffer: what this turn needed, within bounds.
    this.size = length <= FIRST_SIZE ? FIRST_SIZE : length >= MAX_SIZE ? MAX_SIZE : length
    if (length === 0) return
    this.stream.write(length === buffer.length ? buffer : buffer.subarray(0, length), callback)
  }

  /** Makes room for `n` bytes; returns where they go. */
  private reserve(n: number): number {
    const buffer = this.buffer
    if (buffer === null || this.length + n > buffer.length) {
      if (buffer !== null) {
        // Full: this one goes now and the next is twice as large.
        const size = Math.min(MAX_SIZE, buffer.length * 2)
        this.flush()
        this.size = size
      }
      this.buffer = Buffer.allocUnsafe(this.size < n ? COPIED_PACKET_MAX : this.size)
    }
    const at = this.length
    this.length = at + n
    return at
  }
}
