/**
 * Packets for raw clients: valid ones from the project's encoder, malformed ones assembled byte
 * by byte (`packet`, `lp`, `varint`, `fixedHeader`, `str`, `u16`), and the byte-level checks of
 * what a broker answers a CONNECT.
 */
import assert from 'node:assert/strict'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { ConnectPacket, Packet, ProtocolVersion, QoS } from '../../src/protocol/packets.js'

/** The packet interface(s) whose `type` can be `T` (AckPacket covers four types, so Extract won't do). */
export type PacketOf<T extends Packet['type']> = Packet extends infer P ? (P extends { type: infer U } ? (T extends U ? P : never) : never) : never

/** The bytes of a variable byte integer (a fixed header's remaining length). */
export function varint(n: number): number[] {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return out
}

/** A length-prefixed field (string or binary), from a string (UTF-8) or exact bytes. */
export function lp(value: string | Buffer | number[]): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value)
  const out = Buffer.alloc(2 + bytes.length)
  out.writeUInt16BE(bytes.length, 0)
  bytes.copy(out, 2)
  return out
}

/** A whole packet: first byte, remaining length, then the body parts as given. */
export function packet(first: number, ...body: Array<Buffer | number[]>): Buffer {
  const b = Buffer.concat(body.map((p) => Buffer.from(p)))
  return Buffer.concat([Buffer.from([first, ...varint(b.length)]), b])
}

/** The first byte and remaining length of a fixed header, for hand-crafted packets. */
export function fixedHeader(first: number, body: number[] | Buffer): Buffer {
  if (body.length > 127) throw new RangeError('fixedHeader: body too long for a one-byte length')
  return packet(first, body)
}

/** A length-prefixed UTF-8 string, as bytes. */
export function str(s: string): number[] {
  return [...lp(s)]
}

/** A 16-bit big-endian integer, as bytes. */
export function u16(n: number): number[] {
  return [n >> 8, n & 0xff]
}

/**
 * A hand-made CONNECT: protocol name, level, connect flags and keep alive as given, then the
 * payload fields exactly as passed (each usually built with `lp`).
 */
export function rawConnect(options: {
  name?: string | number[]
  level?: number
  flags?: number
  keepAlive?: number
  payload: Array<Buffer | number[]>
}): Buffer {
  const keepAlive = options.keepAlive ?? 0
  return packet(
    0x10,
    lp(options.name ?? 'MQTT'),
    [options.level ?? 4, options.flags ?? 0x02, keepAlive >> 8, keepAlive & 0xff],
    ...options.payload,
  )
}

/**
 * A CONNECT packet, not yet encoded: 3.1.1 (3.1 with its protocol name 'MQIsdp' if `protocolVersion`
 * is 3), clean session, keep alive 0 and client id 'raw' unless `fields` say otherwise.
 */
export function buildConnect(fields: Partial<Omit<ConnectPacket, 'type'>> = {}): ConnectPacket {
  const version = fields.protocolVersion ?? 4
  return {
    type: 'connect',
    protocolName: version === 3 ? 'MQIsdp' : 'MQTT',
    protocolVersion: version,
    cleanSession: true,
    keepAlive: 0,
    clientId: 'raw',
    ...fields,
  }
}

/** A CONNECT with the MQTT 5 defaults: protocol level 5, clean start, keep alive 0. */
export function connectPacket(fields: Partial<Omit<ConnectPacket, 'type'>> & { clientId: string }): ConnectPacket {
  return { type: 'connect', protocolName: 'MQTT', protocolVersion: 5, cleanSession: true, keepAlive: 0, ...fields }
}

/** A valid CONNECT from the project's encoder; 3.1.1 with clean session unless told otherwise. */
export function connect(fields: Partial<Omit<ConnectPacket, 'type'>> = {}): Buffer {
  const p = buildConnect(fields)
  return encodePacket(p, p.protocolVersion as ProtocolVersion)
}

/** A 3.1.1 SUBSCRIBE to one filter. */
export function subscribe(packetId: number, topicFilter: string, qos: QoS = 0): Buffer {
  return encodePacket({ type: 'subscribe', packetId, subscriptions: [{ topicFilter, qos }] }, 4)
}

/** A 3.1.1 PUBLISH. */
export function publish(topic: string, payload: string | Buffer, qos: QoS = 0, packetId = 0): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload
  return encodePacket({ type: 'publish', topic, payload: bytes, qos, retain: false, dup: false, packetId }, 4)
}

export const PINGREQ = Buffer.from([0xc0, 0x00])
export const PINGRESP = Buffer.from([0xd0, 0x00])
export const DISCONNECT = Buffer.from([0xe0, 0x00])

/** Decodes everything a raw client has received so far (the broker's 3.1.1 packets). */
export function decodeAll(bytes: Buffer): Packet[] {
  const packets: Packet[] = []
  new PacketDecoder((p) => packets.push(p)).push(bytes)
  return packets
}

/** A reason or return code as 0x.., for assertion messages that show what was expected. */
export function hex(n: number | undefined): string {
  return n === undefined ? 'undefined' : `0x${n.toString(16).padStart(2, '0')}`
}

/** One packet, short: its type, reason code and, for a PUBLISH, topic and payload. */
export function describePacket(p: Packet): string {
  const rc = 'reasonCode' in p ? ` rc=${hex(p.reasonCode)}` : 'returnCode' in p ? ` rc=${hex(p.returnCode)}` : ''
  const extra = p.type === 'publish' ? ` ${p.topic}:${p.payload.toString()}` : ''
  return `${p.type.toUpperCase()}${rc}${extra}`
}

/** What the byte-level checks below need of a raw client. */
interface ByteClient {
  readonly received: Buffer
  write(bytes: Buffer | number[]): void
  waitBytes(n: number, ms?: number): Promise<void>
  waitClosed(ms?: number): Promise<void>
}

/** Waits for the CONNACK (the first 4 bytes the broker sends) and returns its two fields. */
export async function readConnack(raw: ByteClient, ms?: number): Promise<{ sessionPresent: number; returnCode: number }> {
  await raw.waitBytes(4, ms)
  const r = raw.received
  assert.equal(r[0], 0x20, `expected a CONNACK, got first byte 0x${(r[0] ?? 0).toString(16)}`)
  assert.equal(r[1], 0x02, 'CONNACK remaining length')
  return { sessionPresent: r[2] as number, returnCode: r[3] as number }
}

/** Sends a CONNECT and asserts it is accepted (CONNACK 0). Returns the session present flag. */
export async function connectAccepted(raw: ByteClient, connectPacket: Buffer): Promise<number> {
  raw.write(connectPacket)
  const { sessionPresent, returnCode } = await readConnack(raw)
  assert.equal(returnCode, 0, 'CONNACK return code')
  return sessionPresent
}

/**
 * Sends `bytes` and asserts the broker answers CONNACK `returnCode` with session present 0
 * [MQTT-3.2.2-4], then closes the connection [MQTT-3.2.2-5], sending nothing else.
 */
export async function expectRefused(raw: ByteClient, bytes: Buffer, returnCode: number): Promise<void> {
  raw.write(bytes)
  const connack = await readConnack(raw)
  assert.deepEqual(connack, { sessionPresent: 0, returnCode }, 'CONNACK (session present, return code)')
  await raw.waitClosed()
  assert.equal(raw.received.length, 4, 'nothing after the CONNACK')
}

/**
 * Sends `bytes` and asserts the broker closes the connection without sending anything, in
 * particular no CONNACK [MQTT-3.1.4-1].
 */
export async function expectClosedSilently(raw: ByteClient, bytes: Buffer | null, what: string): Promise<void> {
  if (bytes !== null) raw.write(bytes)
  await raw.waitClosed()
  assert.equal(raw.received.length, 0, `${what}: the broker sent ${raw.received.toString('hex')} before closing`)
}
