// How a generator client reaches the broker: plain TCP (every scenario but two), TLS (`tls`) or
// MQTT over WebSocket (`ws`). Every kind yields a Duplex byte stream, so the MQTT code above it
// (bench/mqtt-wire.ts) is the same whatever carries it.

import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import { createWebSocketStream, WebSocket } from 'ws'

export const HOST = '127.0.0.1'

export type Dial =
  | { kind: 'tcp' }
  /** `ca`: the PEM of the bench's self-signed certificate, so the client verifies the broker as a real one would. */
  | { kind: 'tls'; ca: string }
  /** `path`: the URL path of the broker's WebSocket listener (Mosquitto ignores it). */
  | { kind: 'ws'; path: string }

export const TCP: Dial = { kind: 'tcp' }

/**
 * Opens a byte stream to the broker. `localAddress` (TCP only) picks the loopback source
 * address, so more than one ephemeral port range (~28k ports) is available towards one port.
 * Writes before the connection is up are queued by every kind of stream.
 */
export function dial(port: number, how: Dial, localAddress?: string): Duplex {
  if (how.kind === 'tls') {
    // Node checks the certificate's IP SAN against HOST; the bench's certificate has it.
    return tls.connect({ port, host: HOST, ca: how.ca })
  }
  if (how.kind === 'ws') {
    // Binary frames, no compression (what MQTT clients do), the subprotocol every broker expects.
    const ws = new WebSocket(`ws://${HOST}:${port}${how.path}`, ['mqtt'], { perMessageDeflate: false })
    return createWebSocketStream(ws)
  }
  return net.connect(localAddress === undefined ? { port, host: HOST } : { port, host: HOST, localAddress })
}

/** Loopback source addresses handed out once per generator process (127.0.1.1, 127.0.1.2 ...). */
let nextLoopback = 0

/**
 * `count` loopback addresses never used before by this process: an address's ports stay in
 * TIME_WAIT for a minute after its connections close, and a socket bound before connect() (as
 * `localAddress` does) cannot reuse them, so a repetition must not take its predecessor's.
 */
export function freshLoopbacks(count: number): string[] {
  const out: string[] = []
  for (let i = 0; i < count; i++) {
    const n = nextLoopback++
    // 127.0.1.1 … 127.0.254.254, skipping .0 and .255 in each byte.
    const hi = 1 + Math.floor(n / 254)
    if (hi > 254) throw new Error('out of loopback source addresses')
    out.push(`127.0.${hi}.${1 + (n % 254)}`)
  }
  return out
}
