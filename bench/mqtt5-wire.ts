// The few MQTT 5 packets the `mqtt5` scenario needs, in the same spirit as bench/mqtt-wire.ts:
// encoded once, checked against `mqtt-packet` by bench/wire-check.ts, and on receipt only the
// parts a scenario looks at are read.

import { packet, str, varint, type PublishTemplate } from './mqtt-wire.js'

// Property identifiers (MQTT 5.0, 2.2.2.2).
const Prop = {
  MESSAGE_EXPIRY: 0x02,
  SUBSCRIPTION_ID: 0x0b,
  TOPIC_ALIAS_MAXIMUM: 0x22,
  TOPIC_ALIAS: 0x23,
  USER_PROPERTY: 0x26,
} as const

function props(...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  return Buffer.concat([Buffer.from(varint(body.length)), body])
}

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2)
  b.writeUInt16BE(n, 0)
  return b
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(n, 0)
  return b
}

/** CONNECT, protocol level 5, clean start; `topicAliasMaximum` > 0 lets the broker alias outgoing topics. */
export function encodeConnect5(clientId: string, keepaliveSeconds: number, topicAliasMaximum: number): Buffer {
  const header = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 0x02, 0, 0])
  header.writeUInt16BE(keepaliveSeconds, 8)
  const p = topicAliasMaximum > 0 ? props(Buffer.from([Prop.TOPIC_ALIAS_MAXIMUM]), u16(topicAliasMaximum)) : props()
  return packet(0x10, header, p, str(clientId))
}

/** SUBSCRIBE with a Subscription Identifier (>= 1) for all of `topics`, QoS `qos`, no other options. */
export function encodeSubscribe5(packetId: number, topics: string[], qos: 0 | 1, subscriptionId: number): Buffer {
  const p = props(Buffer.from([Prop.SUBSCRIPTION_ID, ...varint(subscriptionId)]))
  return packet(0x82, u16(packetId), p, ...topics.flatMap((t) => [str(t), Buffer.from([qos])]))
}

export interface Publish5Options {
  messageExpirySeconds: number
  userProperties: Array<[string, string]>
}

/** QoS 0 PUBLISH with a Message Expiry Interval and User Properties, in that order. */
export function encodePublish5(topic: string, payload: Buffer, o: Publish5Options): PublishTemplate {
  const topicBytes = str(topic)
  const p = props(
    Buffer.from([Prop.MESSAGE_EXPIRY]), u32(o.messageExpirySeconds),
    ...o.userProperties.flatMap(([k, v]) => [Buffer.from([Prop.USER_PROPERTY]), str(k), str(v)]),
  )
  const bytes = packet(0x30, topicBytes, p, payload)
  return { bytes, idOffset: -1, payloadOffset: bytes.length - payload.length }
}

/** What a received MQTT 5 PUBLISH carried, as far as the `mqtt5` scenario checks it. */
export interface Publish5Seen {
  /** Offset of the payload in the buffer. */
  payload: number
  /** The topic name was empty: the broker sent a topic alias it had set earlier. */
  aliased: boolean
  topicAlias: number
  subscriptionIds: number[]
  userProperties: number
  messageExpiry: number
}

function readVarint(buf: Buffer, at: number): { value: number; next: number } {
  let value = 0
  let mult = 1
  for (let i = 0; i < 4; i++) {
    const b = buf[at + i] as number
    value += (b & 0x7f) * mult
    if ((b & 0x80) === 0) return { value, next: at + i + 1 }
    mult *= 128
  }
  throw new Error('malformed variable byte integer from broker')
}

/** Offset of the payload of a received MQTT 5 PUBLISH whose body starts at `start` (properties skipped unread). */
export function payloadOffset5(buf: Buffer, start: number, qos: number): number {
  const at = start + 2 + buf.readUInt16BE(start) + (qos > 0 ? 2 : 0)
  const len = readVarint(buf, at)
  return len.next + len.value
}

/** Reads the properties of a received MQTT 5 PUBLISH (for the occasional check, not every message). */
export function readPublish5(buf: Buffer, start: number, qos: number): Publish5Seen {
  const topicLen = buf.readUInt16BE(start)
  const propsAt = start + 2 + topicLen + (qos > 0 ? 2 : 0)
  const len = readVarint(buf, propsAt)
  const end = len.next + len.value
  const seen: Publish5Seen = { payload: end, aliased: topicLen === 0, topicAlias: 0, subscriptionIds: [], userProperties: 0, messageExpiry: -1 }
  let i = len.next
  const skipString = (): void => { i += 2 + buf.readUInt16BE(i) }
  while (i < end) {
    const id = buf[i++] as number
    switch (id) {
      case Prop.MESSAGE_EXPIRY: seen.messageExpiry = buf.readUInt32BE(i); i += 4; break
      case Prop.TOPIC_ALIAS: seen.topicAlias = buf.readUInt16BE(i); i += 2; break
      case Prop.SUBSCRIPTION_ID: { const v = readVarint(buf, i); seen.subscriptionIds.push(v.value); i = v.next; break }
      case Prop.USER_PROPERTY: skipString(); skipString(); seen.userProperties++; break
      case 0x01: i += 1; break // payload format indicator
      case 0x03: case 0x08: skipString(); break // content type, response topic
      case 0x09: skipString(); break // correlation data (binary, same framing)
      default: throw new Error(`unexpected PUBLISH property 0x${id.toString(16)} from broker`)
    }
  }
  return seen
}
