// The load generator of the cluster scenarios (bench/cluster.ts), a process of its own like
// bench/load-generator.ts: raw TCP clients with pre-encoded MQTT 3.1.1 packets
// (bench/mqtt-wire.ts), the publishers connected to one node and the subscribers to another
// (or the same one, for the local scenario).
//
// The load is the main bench's `pairs` / `qos1` (bench/load-throughput.ts): `pairs`
// publisher → subscriber pairs, each pair on a topic of its own, clean sessions,
//   QoS 0: each publisher at most `window` messages ahead of its subscriber (the same Flow,
//          flood and countingSubscriber as the main bench);
//   QoS 1: each publisher keeps `window` PUBLISH unacknowledged, the subscribers (QoS 1
//          subscriptions) acknowledge every delivery; counted: PUBACKs at the publishers
//          (`acked`) and deliveries at the subscribers (`received`).
//
// Before the traffic starts, every pair's route is checked: its publisher sends a probe
// (QoS 0, publisher index 0xFFFFFFFF in the payload, which no Flow has) every 20 ms until its
// subscriber has received one, so no message is timed going to a node that does not know of the
// subscription yet. How long that took for all pairs is returned (`routeMs`).
//
// Requests (IPC): start {ClusterStartArgs} → {routeMs}; mark → Mark; stop → {unacked}.

import { performance } from 'node:perf_hooks'
import { serveIpc } from './ipc.js'
import { countingSubscriber, flood, Flow, STALL_CHECK_MS, windowedQos1, type Counters } from './load-throughput.js'
import type { Mark } from './load-types.js'
import { ackingSubscriber, encodePublish, openMany, PacketType, withTimeout, type WireClient } from './mqtt-wire.js'

const OPEN_CONCURRENCY = 25
const PROBE_EVERY_MS = 20
const PROBE_PUBLISHER = 0xffffffff

export interface ClusterStartArgs {
  /** Where the publishers connect. */
  pubPort: number
  /** Where the subscribers connect. */
  subPort: number
  /** Unique per window: client ids and topics never collide with an earlier window's. */
  tag: string
  pairs: number
  qos: 0 | 1
  /** QoS 0: messages a publisher may be ahead of its subscriber; QoS 1: unacknowledged PUBLISH per publisher. */
  window: number
  payloadBytes: number
  /** How long every pair's route may take to appear. */
  routeTimeoutMs: number
}

type LoadCounters = Counters & { acked: number }

interface Running {
  qos: 0 | 1
  c: LoadCounters
  all: WireClient[]
  subscribers: WireClient[]
  stops: Array<() => void>
  stallTimer: NodeJS.Timeout | null
}

let current: Running | null = null

/**
 * Probes every pair until its subscriber has received something; resolves with how long that
 * took, rejects naming how many pairs never got a route.
 */
async function waitForRoutes(pubs: WireClient[], subs: WireClient[], topics: string[], payloadBytes: number, timeoutMs: number): Promise<number> {
  const t0 = performance.now()
  const payload = Buffer.alloc(payloadBytes, 0x61)
  payload.writeUInt32LE(PROBE_PUBLISHER, 0)
  const probes = topics.map((t) => encodePublish(t, payload, 0).bytes)
  const routed = subs.map(() => false)
  let left = subs.length
  subs.forEach((s, i) => {
    s.framer.wantBody = () => false
    s.framer.onPacket = (first) => {
      if (first >> 4 === PacketType.PUBLISH && !routed[i]) {
        routed[i] = true
        left--
      }
    }
  })
  while (left > 0) {
    if (performance.now() - t0 > timeoutMs) {
      throw new Error(`${left} of ${subs.length} subscriptions were not routed from the publishers' node within ${timeoutMs} ms`)
    }
    pubs.forEach((p, i) => { if (!routed[i]) p.socket.write(probes[i] as Buffer) })
    await new Promise((r) => setTimeout(r, PROBE_EVERY_MS))
  }
  const ms = performance.now() - t0
  // Probes still on their way arrive before the real traffic is counted.
  await new Promise((r) => setTimeout(r, 100))
  return ms
}

async function start(a: ClusterStartArgs): Promise<{ routeMs: number }> {
  if (a.payloadBytes < 8) throw new Error('the payload must hold publisher index and sequence number')
  const payload = Buffer.alloc(a.payloadBytes, 0x61)
  const c: LoadCounters = { sent: 0, received: 0, writtenOff: 0, acked: 0 }
  const r: Running = { qos: a.qos, c, all: [], subscribers: [], stops: [], stallTimer: null }
  const topics = Array.from({ length: a.pairs }, (_, i) => `cluster/${a.tag}/pair/${i}`)
  try {
    const subs = await openMany(a.pairs, OPEN_CONCURRENCY, (i) => ({
      port: a.subPort, clientId: `${a.tag}-s${i}`, subscribe: { topic: topics[i] as string, qos: a.qos }, timeoutMs: 30_000,
    }))
    r.all.push(...subs)
    r.subscribers.push(...subs)
    const pubs = await openMany(a.pairs, OPEN_CONCURRENCY, (i) => ({ port: a.pubPort, clientId: `${a.tag}-p${i}`, timeoutMs: 30_000 }))
    r.all.push(...pubs)
    const routeMs = await waitForRoutes(pubs, subs, topics, a.payloadBytes, a.routeTimeoutMs)
    if (a.qos === 0) {
      const flows = topics.map(() => new Flow(a.window, 1))
      // Pair i only ever receives publisher i, whose flow has it as its one subscriber.
      for (const s of subs) countingSubscriber(s, 0, flows, c)
      pubs.forEach((p, i) => r.stops.push(flood(p, topics[i] as string, payload, i, flows[i] as Flow, c)))
      r.stallTimer = setInterval(() => {
        const now = performance.now()
        for (const f of flows) c.writtenOff += f.checkStall(now)
      }, STALL_CHECK_MS)
    } else {
      for (const s of subs) ackingSubscriber(s, () => c.received++)
      pubs.forEach((p, i) => r.stops.push(windowedQos1(p, topics[i] as string, payload, a.window, c)))
    }
    current = r
    return { routeMs }
  } catch (err) {
    for (const cl of r.all) cl.destroy()
    throw err
  }
}

/** Resolves once `count()` has not moved for `quietMs`, or after `maxMs` at most. */
async function settled(count: () => number, quietMs: number, maxMs: number): Promise<void> {
  const end = performance.now() + maxMs
  let last = count()
  let lastChange = performance.now()
  while (performance.now() < end) {
    await new Promise((r) => setTimeout(r, 20))
    const now = count()
    if (now !== last) {
      last = now
      lastChange = performance.now()
    } else if (performance.now() - lastChange >= quietMs) {
      return
    }
  }
}

async function stop(): Promise<{ unacked: number }> {
  const r = current
  current = null
  if (!r) return { unacked: 0 }
  if (r.stallTimer) clearInterval(r.stallTimer)
  for (const s of r.stops) s()
  // What is in flight arrives (bounded) before the sockets close: leftover work would bleed
  // into the next window, and tearing 100 busy sockets down is not what is measured.
  await settled(() => r.c.received + r.c.acked, 200, 5000)
  const unacked = r.qos === 1 ? r.c.sent - r.c.acked : 0
  await Promise.all(r.all.map((cl) => cl.disconnect(2000)))
  return { unacked }
}

function mark(): Mark {
  const r = current
  if (!r) throw new Error('no load is running')
  const cpu = process.cpuUsage()
  return {
    t: performance.now(),
    cpuUs: cpu.user + cpu.system,
    counters: {
      sent: r.c.sent, acked: r.c.acked, received: r.c.received, writtenOff: r.c.writtenOff,
      subscriberReads: r.subscribers.reduce((n, cl) => n + cl.reads, 0),
      socketErrors: r.all.reduce((n, cl) => n + cl.errors, 0),
    },
    metrics: {},
  }
}

serveIpc({
  start: async (args) => {
    if (current) await stop()
    return start(args as ClusterStartArgs)
  },
  mark: () => mark(),
  stop: () => withTimeout(stop(), 30_000, 'stopping the load'),
}, () => process.exit(0))

process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
process.send?.({ type: 'ready' })
