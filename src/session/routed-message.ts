import type { Message } from '../hooks/types.js'
import { encodePropertyValues, encodePublish, encodePublishV5 } from '../protocol/encoder.js'
import type { Properties, PublishPacket, QoS } from '../protocol/packets.js'
import type { StoredMessage } from '../persistence/adapter.js'

/**
 * Packets up to this size are copied into a connection's output buffer, not kept by the socket
 * (see `OutputBuffer`): a view of a read buffer that small may be written without pinning it.
 */
export const COPIED_PACKET_MAX = 2048

const NO_PROPERTIES = Buffer.alloc(0)

/** An outbound topic alias: the alias to send, and whether the topic goes with it (first use). */
export interface TopicAliasUse {
  alias: number
  sendTopic: boolean
}

/** Whether a message's Message Expiry Interval has passed at `now` [MQTT-3.3.2-5]. */
export function isExpired(message: StoredMessage, now: number): boolean {
  const interval = message.properties?.messageExpiryInterval
  return interval !== undefined && now - message.receivedAt >= interval * 1000
}

/**
 * A message on its way through the broker. It is created once per PUBLISH and shared by every
 * subscriber; it caches its encodings so each outgoing form (QoS, retain flag) is encoded once.
 */
export class RoutedMessage implements Message, StoredMessage {
  properties?: Properties
  /** Encodings for MQTT 3.1/3.1.1, indexed by qos * 2 + retain (made at the first). */
  private encodedV4: Array<Buffer | undefined> | undefined
  private owned = false
  /**
   * Non-zero when `payload` is a view of a 3.1/3.1.1 PUBLISH as received: how many bytes of the
   * packet precede it. That packet is sent on as it is where QoS and RETAIN stay the same.
   */
  bytesBeforePayload = 0
  /** With `bytesBeforePayload`: the read buffer holding that packet (`payload` is a view of it). */
  wire: Buffer | undefined = undefined
  /** The identifier it is stored under once a persistent session queued it (0: not stored). */
  storeId = 0
  /** The persistence batch that last stored it (0: none, or committed before this run). */
  storedIn = 0
  /** Published on another cluster node, which forwarded it here (it is not forwarded again). */
  fromCluster = false
  /** Delivered on this node only, never forwarded (the broker's own $SYS messages). */
  nodeLocal = false
  /** MQTT 5 encodings without subscription identifiers, for the expiry value they carry. */
  private encodedV5: Array<Buffer | undefined> | undefined
  private encodedV5Expiry: number | undefined
  /** The forwarded properties, encoded, for deliveries that add identifiers or an alias to them. */
  private commonV5: Buffer | undefined
  private commonV5Expiry: number | undefined

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
   * packet identifier in it is a placeholder: copy it and call `setPacketId` (both encodings).
   */
  encodeV4(qos: QoS, retain: boolean): Buffer {
    const key = qos * 2 + (retain ? 1 : 0)
    const encoded = (this.encodedV4 ??= [undefined, undefined, undefined, undefined, undefined, undefined])
    let bytes = encoded[key]
    if (bytes === undefined) {
      bytes = this.asReceived(qos, retain) ?? encodePublish(
        { type: 'publish', topic: this.topic, payload: this.payload, qos, retain, dup: false, packetId: qos > 0 ? 1 : 0 },
        4,
      )
      encoded[key] = bytes
    }
    return bytes
  }

  /**
   * The 3.1/3.1.1 PUBLISH as the publisher sent it, when it fits `qos` and `retain` (its DUP flag
   * and packet identifier are the publisher's: QoS 1/2 copies set their own). It is a view of the
   * read buffer, so it is used only where it cannot pin much more memory than its own size: a
   * small packet (writers copy those) or one filling most of its buffer.
   */
  private asReceived(qos: QoS, retain: boolean): Buffer | undefined {
    const before = this.bytesBeforePayload
    if (before === 0 || qos !== this.qos || retain !== this.retain) return undefined
    const p = this.payload
    const length = before + p.length
    if (length > COPIED_PACKET_MAX && p.buffer.byteLength > 2 * length + 8192) return undefined
    return Buffer.from(p.buffer, p.byteOffset - before, length)
  }

  /**
   * The read buffer to copy the 3.1/3.1.1 PUBLISH as received from (`OutputBuffer.appendReceived`),
   * for the first subscriber it fits (`qos`, `retain`, small enough to copy); undefined otherwise.
   * The first copy costs no encoding and no new view of the buffer; later subscribers copy the
   * view encodeV4 makes once, which is cheaper per copy than the header byte by byte.
   */
  takeWire(qos: QoS, retain: boolean): Buffer | undefined {
    const wire = this.wire
    if (wire === undefined || qos !== this.qos || retain !== this.retain || this.bytesBeforePayload + this.payload.length > COPIED_PACKET_MAX) return undefined
    this.wire = undefined
    return wire
  }

  /**
   * The bytes of this message as an MQTT 5 PUBLISH: the publisher's properties are forwarded
   * unchanged and in order [MQTT-3.3.2-17] [MQTT-3.3.2-18], except the Topic Alias (which belonged
   * to the publisher's connection), its Subscription Identifiers (replaced by the subscriber's
   * own [MQTT-3.3.4-3]) and the Message Expiry Interval, reduced by the time spent in the broker
   * [MQTT-3.3.2-6]. Without subscription identifiers the encoding is shared (cached).
   */
  encodeV5(qos: QoS, retain: boolean, subscriptionIds: number[] | undefined, alias?: TopicAliasUse): Buffer {
    const expiry = this.properties?.messageExpiryInterval === undefined ? undefined : this.remainingExpiry(Date.now())
    if (alias === undefined && subscriptionIds === undefined) {
      const key = qos * 2 + (retain ? 1 : 0)
      const cached = this.encodedV5?.[key]
      if (cached !== undefined && this.encodedV5Expiry === expiry) return cached
      if (this.encodedV5 === undefined || this.encodedV5Expiry !== expiry) {
        this.encodedV5 = [undefined, undefined, undefined, undefined, undefined, undefined]
        this.encodedV5Expiry = expiry
      }
      const bytes = this.encode5(qos, retain, this.forwardedProperties(expiry, undefined))
      this.encodedV5[key] = bytes
      return bytes
    }
    // Per subscriber: the message's properties are encoded once (per expiry value), and only
    // the subscriber's identifiers and alias are added to them.
    const topic = alias === undefined || alias.sendTopic ? this.topic : ''
    return encodePublishV5(topic, this.payload, qos, retain, this.commonProperties(expiry), subscriptionIds, alias?.alias)
  }

  /** The forwarded properties as bytes, for `expiry` (recomputed when it changes, at most once a second). */
  private commonProperties(expiry: number | undefined): Buffer {
    if (this.commonV5 !== undefined && this.commonV5Expiry === expiry) return this.commonV5
    const properties = this.forwardedProperties(expiry, undefined)
    const bytes = properties === undefined ? NO_PROPERTIES : encodePropertyValues(properties)
    this.commonV5 = bytes
    this.commonV5Expiry = expiry
    return bytes
  }

  private encode5(qos: QoS, retain: boolean, properties: Properties | undefined): Buffer {
    const packet: PublishPacket = { type: 'publish', topic: this.topic, payload: this.payload, qos, retain, dup: false, packetId: qos > 0 ? 1 : 0 }
    if (properties !== undefined) packet.properties = properties
    return encodePublish(packet, 5)
  }

  private forwardedProperties(expiry: number | undefined, subscriptionIds: number[] | undefined): Properties | undefined {
    const source = this.properties
    if (source === undefined && subscriptionIds === undefined) return undefined
    const out: Properties = {}
    if (source !== undefined) {
      for (const key of Object.keys(source) as Array<keyof Properties>) {
        if (key === 'topicAlias' || key === 'subscriptionIdentifier') continue
        ;(out as Record<string, unknown>)[key] = source[key]
      }
    }
    if (expiry !== undefined) out.messageExpiryInterval = expiry
    if (subscriptionIds !== undefined) out.subscriptionIdentifier = subscriptionIds
    return out
  }

  /** Seconds left before the message expires (undefined: it does not expire). */
  remainingExpiry(now: number): number | undefined {
    const interval = this.properties?.messageExpiryInterval
    if (interval === undefined) return undefined
    return Math.max(0, interval - Math.floor((now - this.receivedAt) / 1000))
  }

  /** When the message expires (ms since the epoch), Infinity when it does not. */
  expiresAt(): number {
    const interval = this.properties?.messageExpiryInterval
    return interval === undefined ? Infinity : this.receivedAt + interval * 1000
  }

  /** Whether the Message Expiry Interval has passed: such a message is no longer delivered [MQTT-3.3.2-5]. */
  isExpired(now: number): boolean {
    return isExpired(this, now)
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
    if (p.buffer.byteLength > 2 * p.length + 8192) {
      this.payload = Buffer.from(p)
      // Cached views of the packet as received would pin the buffer all the same.
      this.bytesBeforePayload = 0
      this.wire = undefined
      this.encodedV4 = undefined
    }
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
