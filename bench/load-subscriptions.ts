// The `subs1m` load: `clients` clients subscribe `filtersPerClient` filters each (one SUBSCRIBE
// per client), a quarter literal and three quarters wildcard; `start` resolves once every filter
// is granted (`subscribeMs`), and bench/run.ts reads the broker's memory then. After that one
// publisher floods TARGETS topics, each matching exactly one of the filters, at most `window`
// messages ahead of all deliveries together: the match rate with that many subscriptions held.
//
// Filter j of client c, and the topic that matches it (and no other filter of the load):
//   j % 4 = 0   bench/T/s/c/j/v      bench/T/s/c/j/v
//           1   bench/T/s/c/j/+      bench/T/s/c/j/v
//           2   bench/T/s/c/+/j      bench/T/s/c/x/j
//           3   bench/T/s/c/j/#      bench/T/s/c/j/w/z
// Checked on every delivery: it reached the client whose filter the topic was chosen for.

import { performance } from 'node:perf_hooks'
import type { Running, StartArgs } from './load-types.js'
import { drained } from './load-throughput.js'
import { encodePublish, openMany, PacketType, WireClient } from './mqtt-wire.js'

/** Distinct topics the publisher cycles through, spread over all clients and filter shapes. */
const TARGETS = 4096
const PER_WRITE = 64
const STALL_MS = 2000
// Big SUBSCRIBE packets: a few at a time so the broker's work, not a burst, sets the pace.
const OPEN_CONCURRENCY = 8

export function filterOf(tag: string, c: number, j: number): string {
  const base = `bench/${tag}/s/${c}`
  switch (j % 4) {
    case 0: return `${base}/${j}/v`
    case 1: return `${base}/${j}/+`
    case 2: return `${base}/+/${j}`
    default: return `${base}/${j}/#`
  }
}

export function topicFor(tag: string, c: number, j: number): string {
  const base = `bench/${tag}/s/${c}`
  switch (j % 4) {
    case 0: case 1: return `${base}/${j}/v`
    case 2: return `${base}/x/${j}`
    default: return `${base}/${j}/w/z`
  }
}

export async function startSubscriptions(args: StartArgs): Promise<Running> {
  const { port, spec, tag, dial } = args
  if (spec.kind !== 'subscriptions') throw new Error(`not a subscriptions load: ${spec.kind}`)
  if (args.payloadBytes < 8) throw new Error('payload must hold target index and sequence number')
  const t0 = performance.now()
  const clients = await openMany(spec.clients, OPEN_CONCURRENCY, (c) => ({
    port, dial, clientId: `${tag}-m${c}`, timeoutMs: 120_000,
    subscribe: { topic: Array.from({ length: spec.filtersPerClient }, (_, j) => filterOf(tag, c, j)), qos: 0 },
  }))
  const subscribeMs = performance.now() - t0
  let pub: WireClient
  try {
    pub = await WireClient.open({ port, dial, clientId: `${tag}-mp` })
  } catch (err) {
    for (const cl of clients) cl.destroy()
    throw err
  }

  // Targets: client and filter chosen by a fixed stride, so every shape and many clients occur.
  const payload = Buffer.alloc(args.payloadBytes, 0x61)
  const targets = Array.from({ length: TARGETS }, (_, k) => {
    const c = (k * 7919) % spec.clients
    const j = (k * 104_729) % spec.filtersPerClient
    const tpl = encodePublish(topicFor(tag, c, j), payload, 0)
    tpl.bytes.writeUInt32LE(c, tpl.payloadOffset)
    return tpl
  })

  let sent = 0
  let received = 0
  let misrouted = 0
  let writtenOff = 0
  // One window over all deliveries: no per-target flow, since a target is not a subscriber.
  let waiting: (() => void) | null = null
  let blockedAt = 0
  const wake = (): void => {
    const w = waiting
    waiting = null
    w?.()
  }
  clients.forEach((cl, c) => {
    cl.framer.wantBody = (first) => first >> 4 === PacketType.PUBLISH
    cl.framer.onPacket = (first, buf, start) => {
      if (first >> 4 !== PacketType.PUBLISH) return
      received++
      const at = start + 2 + buf.readUInt16BE(start) + (((first >> 1) & 3) > 0 ? 2 : 0)
      if (buf.readUInt32LE(at) !== c) misrouted++
      if (waiting !== null && sent - received - writtenOff + PER_WRITE <= spec.window) wake()
    }
  })

  let running = true
  let next = 0
  const pump = (): void => {
    if (!running || pub.socket.destroyed) return
    if (sent - received - writtenOff + PER_WRITE > spec.window) {
      waiting = pump
      blockedAt = performance.now()
      return
    }
    const parts: Buffer[] = []
    for (let k = 0; k < PER_WRITE; k++) {
      const tpl = targets[next++ % TARGETS] as (typeof targets)[number]
      const b = Buffer.from(tpl.bytes)
      b.writeUInt32LE(sent + k, tpl.payloadOffset + 4)
      parts.push(b)
    }
    sent += PER_WRITE
    if (pub.socket.write(Buffer.concat(parts))) setImmediate(pump)
    else pub.socket.once('drain', pump)
  }
  setImmediate(pump)
  // QoS 0 may be dropped: a window stuck this long has lost its tail, and is released.
  const stallTimer = setInterval(() => {
    if (waiting === null || performance.now() - blockedAt < STALL_MS) return
    writtenOff = sent - received
    wake()
  }, 50)

  return {
    counters: () => ({ sent, received, writtenOff, misrouted, subscriptions: spec.clients * spec.filtersPerClient }),
    setup: { subscribeMs },
    problem: () => (misrouted > 0 ? `${misrouted} deliveries reached a client whose filters do not match` : null),
    stop: async () => {
      running = false
      clearInterval(stallTimer)
      await drained(() => received, 100, 2000)
      pub.destroy()
      for (const cl of clients) cl.destroy()
    },
  }
}
