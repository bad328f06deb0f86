import type { Message } from '../hooks/types.js'
import { encodePublish, publishPacketIdOffset } from '../protocol/encoder.js'
import type { Properties, QoS } from '../protocol/packets.js'
import type { StoredMessage } from '../persistence/adapter.js'

/**
 * A message on its way through the broker. It is created once per PUBLISH and shared by every
 * subscriber; it caches its encodings so each outgoing form (QoS, retain flag) is encoded once.
 */
export class RoutedMessage implements Message, StoredMessage {
  properties?: Properties
  /** Encodings for MQTT 3.1/3.1.1, indexed by qos * 2 + retain. */
  private readonly encodedV4: Array<Buffer | undefined> = [undefined, undefined, undefined, undefined, undefined, undefined]
  private packetIdOffset = -1
  private owned = false

  constructor(
    readonly topic: string,
    public payload: Buffer,
    readonly qos: QoS,
    readonly retain: boolean,
    readonly receivedAt: number = Date.now(),
  ) {}

  static from(stored: StoredMessage): RoutedMessage {
    if (stored instanceof RoutedMessage) return stored
    const m = new RoutedMessage(stored.topic, stored.payload, stored.qos, stored.retain, stored.receivedAt)
    if (stored.properties) m.properties = stored.properties
    return m
  }

  /**
   * The bytes of this message as a 3.1/3.1.1 PUBLISH at `qos` with `retain`. For QoS 1/2 the
   * packet identifier in it is a placeholder: copy it and call `setPacketId`.
   */
  encodeV4(qos: QoS, retain: boolean): Buffer {
    const key = qos * 2 + (retain ? 1 : 0)
    let bytes = this.encodedV4[key]
    if (bytes === undefined) {
      bytes = encodePublish(
        { type: 'publish', topic: this.topic, payload: this.payload, qos, retain, dup: false, packetId: qos > 0 ? 1 : 0 },
        4,
      )
      this.encodedV4[key] = bytes
      if (qos > 0 && this.packetIdOffset < 0) this.packetIdOffset = publishPacketIdOffset(bytes)
    }
    return bytes
  }

  /**
   * Called before the message is kept beyond this event-loop turn (queued, in flight, retained).
   * A decoded payload is a view of the socket's read buffer; keeping the view would pin the whole
   * buffer, so a small payload in a large buffer is copied once.
   */
  ownPayload(): void {
    if (this.owned) return
    this.owned = true
    const p = this.payload
    if (p.buffer.byteLength > 2 * p.length + 8192) this.payload = Buffer.from(p)
  }

  /** Where the packet identifier sits in this message's QoS 1/2 encodings. */
  get idOffset(): number {
    return this.packetIdOffset
  }

  /** Plain data for a persistence adapter. */
  toStored(): StoredMessage {
    const stored: StoredMessage = {
      topic: this.topic,
      payload: this.payload,
      qos: this.qos,
      retain: this.retain,
      receivedAt: this.receivedAt,
    }
    if (this.properties) stored.properties = this.properties
    return stored
  }
}
