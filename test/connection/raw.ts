/**
 * Raw-packet helpers for the connection tests: valid packets come from the project's encoder,
 * malformed ones are assembled byte by byte with `packet` and `lp`.
 */
import assert from 'node:assert/strict'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { ConnectPacket, Packet, ProtocolVersion, QoS } from '../../src/protocol/packets.js'
import type { RawClient } from '../helpers.js'

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

/** A valid CONNECT from the project's encoder; 3.1.1 with clean session unless told otherwise. */
export function connect(fields: Partial<Omit<ConnectPacket, 'type'>> = {}): Buffer {
  const packet = buildConnect(fields)
  return encodePacket(packet, packet.protocolVersion as ProtocolVersion)
}

export function subscribe(packetId: number, topicFilter: string, qos: QoS = 0): Buffer {
  return encodePacket({ type: 'subscribe', packetId, subscriptions: [{ topicFilter, qos }] }, 4)
}

export function publish(topic: string, payload: string | Buffer, qos: QoS = 0, packetId = 0): Buffer {
  const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload
  return encodePacket({ type: 'publish', topic, payload: bytes, qos, retain: false, dup: false, packetId }, 4)
}

export const PINGREQ = Buffer.from([0xc0, 0x00])
export const PINGRESP = Buffer.from([0xd0, 0x00])
export const DISCONNECT = Buffer.from([0xe0, 0x00])

/** Decodes everything a raw client has received so far (the broker's packets). */
export function decodeAll(bytes: Buffer): Packet[] {
  const packets: Packet[] = []
  new PacketDecoder((p) => packets.push(p)).push(bytes)
  return packets
}

/** Waits for the CONNACK (the first 4 bytes the broker sends) and returns its two fields. */
export async function readConnack(raw: RawClient, ms = 3000): Promise<{ sessionPresent: number; returnCode: number }> {
  await raw.waitBytes(4, ms)
  const r = raw.received
  assert.equal(r[0], 0x20, `expected a CONNACK, got first byte 0x${(r[0] ?? 0).toString(16)}`)
  assert.equal(r[1], 0x02, 'CONNACK remaining length')
  return { sessionPresent: r[2] as number, returnCode: r[3] as number }
}

/** Sends a CONNECT and asserts it is accepted (CONNACK 0). Returns the session present flag. */
export async function connectAccepted(raw: RawClient, connectPacket: Buffer): Promise<number> {
  raw.write(connectPacket)
  const { sessionPresent, returnCode } = await readConnack(raw)
  assert.equal(returnCode, 0, 'CONNACK return code')
  return sessionPresent
}

/**
 * Sends `bytes` and asserts the broker answers CONNACK `returnCode` with session present 0
 * [MQTT-3.2.2-4], then closes the connection [MQTT-3.2.2-5], sending nothing else.
 */
export async function expectRefused(raw: RawClient, bytes: Buffer, returnCode: number): Promise<void> {
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
export async function expectClosedSilently(raw: RawClient, bytes: Buffer | null, what: string): Promise<void> {
  if (bytes !== null) raw.write(bytes)
  await raw.waitClosed()
  assert.equal(raw.received.length, 0, `${what}: the broker sent ${raw.received.toString('hex')} before closing`)
}
