// Throughput loads: fan-in, fan-out, publisher/subscriber pairs at QoS 0 and QoS 1.
//
// QoS 0 publishers write one pre-built Buffer holding many PUBLISH packets, as fast as the
// socket drains and as far as a deep window allows (see Flow). Subscribers only frame the
// stream and count PUBLISH packets. Flow, countingSubscriber and flood are also the QoS 0 load of
// the cluster scenarios (bench/cluster-load.ts).

import type { Running, StartArgs } from './load-types.js'
import {
  ackingSubscriber, encodePublish, openMany, PacketType, repeatPacket, type PublishTemplate, type WireClient,
} from './mqtt-wire.js'

export const OPEN_CONCURRENCY = 25
// A flow whose window has been full this long with nothing new delivered is taken to have
// lost its tail (QoS 0 may be dropped by design) and gets its window back. Far longer than
// any healthy broker's delivery delay, so it only ever unsticks a flow.
const STALL_MS = 2000
export const STALL_CHECK_MS = 50
// Generous: with 10,000 subscribers opening, a broker may be slow to answer some handshakes.
const OPEN_TIMEOUT_MS = 30_000

export interface Counters {
  sent: number
  received: number
  writtenOff: number
  /** PUBACKs the publishers got, where the caller counts them (the cluster scenarios). */
  acked?: number
  /** Deliveries to a subscriber that should not have had them, where the load checks it. */
  misrouted?: number
}

/**
 * One publisher's messages in flight, with a deep application-level window: the publisher may
 * be at most `window` messages ahead of what its subscriber(s) received. Every PUBLISH carries
 * (publisher index, sequence number) in its payload, so a dropped message is accounted for as
 * soon as a later one arrives, without guessing.
 *
 * TCP backpressure alone is not enough: a broker that keeps reading while it cannot deliver
 * (Aedes does) would then be measured on how it drowns, not on how fast it routes. The window
 * keeps every broker at its sustainable rate and is deep enough (tens of ms of traffic) never
 * to be what limits a healthy broker.
 */
export class Flow {
  sent = 0
  /** Per subscriber: highest sequence number seen + 1. */
  private readonly seen: Float64Array
  /** A lower bound of min(seen): messages every subscriber has received or has lost for good. */
  private settled = 0
  private lastProgress = performance.now()
  private waiter: (() => void) | null = null
  /** While the publisher waits: what every subscriber's `seen` must reach, and how many have not. */
  private threshold = 0
  private behind = 0

  constructor(readonly window: number, subscribers: number) {
    this.seen = new Float64Array(subscribers)
  }

  /** Deliveries that may be in flight at most (window × subscribers). */
  get depth(): number {
    return this.window * this.seen.length
  }

  /** Whether `n` more fit in the window; if not, `resume` runs as soon as they do. */
  trySend(n: number, resume: () => void): boolean {
    if (this.sent - this.settled + n <= this.window) return true
    // Deliveries seen while the publisher was not waiting have not been folded in yet. One pass
    // here, then O(1) per delivery: with 10,000 subscribers a minimum per delivery would cost
    // the generator more than the broker.
    const threshold = this.sent + n - this.window
    let behind = 0
    let min = Infinity
    for (const v of this.seen) {
      if (v < threshold) behind++
      if (v < min) min = v
    }
    if (min > this.settled) this.settled = min
    if (behind === 0) return true
    this.waiter = resume
    this.threshold = threshold
    this.behind = behind
    // The stall clock counts from when the publisher blocked (or last saw progress).
    this.lastProgress = performance.now()
    return false
  }

  observe(subscriber: number, seq: number): void {
    const before = this.seen[subscriber] as number
    if (seq + 1 <= before) return
    this.seen[subscriber] = seq + 1
    if (this.waiter === null || before >= this.threshold || seq + 1 < this.threshold) return
    // This subscriber just caught up with what the waiting publisher needs.
    this.lastProgress = performance.now()
    if (--this.behind > 0) return
    this.settled = this.threshold
    this.wake()
  }

  /** Returns how many messages were written off as lost. */
  checkStall(now: number): number {
    if (this.waiter === null || now - this.lastProgress < STALL_MS) return 0
    let min = Infinity
    for (const v of this.seen) if (v < min) min = v
    const lost = this.sent - min
    this.seen.fill(this.sent)
    this.settled = this.sent
    this.lastProgress = now
    this.wake()
    return lost
  }

  private wake(): void {
    const w = this.waiter
    this.waiter = null
    if (w) w()
  }
}

/** Where the payload of a received PUBLISH starts (MQTT 3.1.1; MQTT 5 has properties before it). */
export type PayloadAt = (first: number, buf: Buffer, start: number) => number

const payloadAt311: PayloadAt = (first, buf, start) => start + 2 + buf.readUInt16BE(start) + (((first >> 1) & 3) > 0 ? 2 : 0)

/**
 * Counts PUBLISH packets and feeds the (publisher, sequence) in each payload to its flow. With
 * `onlyFrom`, a message of any other publisher is counted in `c.misrouted`.
 */
export function countingSubscriber(
  client: WireClient, index: number, flows: Flow[], c: Counters, payloadAt: PayloadAt = payloadAt311, onlyFrom?: number,
): void {
  client.framer.wantBody = (first) => first >> 4 === PacketType.PUBLISH
  client.framer.onPacket = (first, buf, start) => {
    if (first >> 4 !== PacketType.PUBLISH) return
    c.received++
    const payload = payloadAt(first, buf, start)
    const publisher = buf.readUInt32LE(payload)
    if (onlyFrom !== undefined && publisher !== onlyFrom) c.misrouted = (c.misrouted ?? 0) + 1
    flows[publisher]?.observe(index, buf.readUInt32LE(payload + 4))
  }
}

/** Floods QoS 0 PUBLISH within the flow's window, honouring socket backpressure. */
export function flood(client: WireClient, topic: string, payload: Buffer, publisher: number, flow: Flow, c: Counters): () => void {
  return floodTemplate(client, encodePublish(topic, payload, 0), publisher, flow, c)
}

/** flood() with a PUBLISH of the caller's (e.g. MQTT 5, with properties); its payload holds (publisher, sequence). */
export function floodTemplate(client: WireClient, tpl: PublishTemplate, publisher: number, flow: Flow, c: Counters): () => void {
  const len = tpl.bytes.length
  // Several packets per write so syscalls are a small cost per message; a quarter of the
  // window so the window refills in steps rather than all at once.
  const perWrite = Math.max(1, Math.min(128, Math.floor(flow.window / 4)))
  const template = repeatPacket(tpl.bytes, perWrite)
  for (let i = 0; i < perWrite; i++) template.writeUInt32LE(publisher, i * len + tpl.payloadOffset)
  const socket = client.socket
  let running = true
  const pump = (): void => {
    if (!running || socket.destroyed) return
    if (!flow.trySend(perWrite, pump)) return
    // A fresh Buffer per write: a queued write still references the one before.
    const out = Buffer.from(template)
    for (let i = 0; i < perWrite; i++) out.writeUInt32LE(flow.sent + i, i * len + tpl.payloadOffset + 4)
    flow.sent += perWrite
    c.sent += perWrite
    // setImmediate, not a loop: loopback writes usually complete synchronously, and a loop
    // would starve this process's own subscribers of reads.
    if (socket.write(out)) setImmediate(pump)
    else socket.once('drain', pump)
  }
  setImmediate(pump)
  return () => { running = false }
}

/** Keeps `window` QoS 1 PUBLISH unacknowledged; each PUBACK releases the next one. */
export function windowedQos1(client: WireClient, topic: string, payload: Buffer, window: number, c: Counters): () => void {
  const tpl = encodePublish(topic, payload, 1)
  const len = tpl.bytes.length
  let nextId = 1
  let owed = window
  let running = true
  const send = (): void => {
    if (!running || owed === 0 || client.socket.destroyed) return
    const out = Buffer.allocUnsafe(len * owed)
    for (let i = 0; i < owed; i++) {
      tpl.bytes.copy(out, i * len)
      out.writeUInt16BE(nextId, i * len + tpl.idOffset)
      nextId = nextId === 0xffff ? 1 : nextId + 1
    }
    c.sent += owed
    owed = 0
    client.socket.write(out)
  }
  client.framer.onPacket = (first) => {
    if (first >> 4 !== PacketType.PUBACK) return
    owed++
    if (c.acked !== undefined) c.acked++
  }
  client.afterChunk = send
  setImmediate(send)
  return () => { running = false }
}

export async function startThroughput(args: StartArgs): Promise<Running> {
  const { port, spec, tag, dial } = args
  if (args.payloadBytes < 8) throw new Error('throughput payload must hold publisher index and sequence number')
  const payload = Buffer.alloc(args.payloadBytes, 0x61)
  const c: Counters = { sent: 0, received: 0, writtenOff: 0 }
  const all: WireClient[] = []
  const subscribers: WireClient[] = []
  const stops: Array<() => void> = []
  const flows: Flow[] = []

  try {
    if (spec.kind === 'fanin' || spec.kind === 'fanout') {
      const topic = `bench/${tag}/${spec.kind}`
      const subCount = spec.kind === 'fanin' ? 1 : spec.subscribers
      const pubCount = spec.kind === 'fanin' ? spec.publishers : 1
      for (let i = 0; i < pubCount; i++) flows.push(new Flow(spec.window, subCount))
      const subs = await openMany(subCount, OPEN_CONCURRENCY, (i) => ({
        port, dial, clientId: `${tag}-s${i}`, subscribe: { topic, qos: 0 }, timeoutMs: OPEN_TIMEOUT_MS,
      }))
      all.push(...subs)
      subscribers.push(...subs)
      subs.forEach((s, i) => countingSubscriber(s, i, flows, c))
      const pubs = await openMany(pubCount, OPEN_CONCURRENCY, (i) => ({ port, dial, clientId: `${tag}-p${i}` }))
      all.push(...pubs)
      pubs.forEach((p, i) => stops.push(flood(p, topic, payload, i, flows[i] as Flow, c)))
    } else if (spec.kind === 'pairs') {
      const topicOf = (i: number): string => `bench/${tag}/pair/${i}`
      const subs = await openMany(spec.pairs, OPEN_CONCURRENCY, (i) => ({
        port, dial, clientId: `${tag}-s${i}`, subscribe: { topic: topicOf(i), qos: spec.qos },
      }))
      all.push(...subs)
      subscribers.push(...subs)
      if (spec.qos === 0) {
        for (let i = 0; i < spec.pairs; i++) flows.push(new Flow(spec.window, 1))
        // Pair i only ever receives publisher i, whose flow has it as its one subscriber.
        for (const s of subs) countingSubscriber(s, 0, flows, c)
      } else {
        for (const s of subs) ackingSubscriber(s, () => c.received++)
      }
      const pubs = await openMany(spec.pairs, OPEN_CONCURRENCY, (i) => ({ port, dial, clientId: `${tag}-p${i}` }))
      all.push(...pubs)
      pubs.forEach((p, i) => {
        stops.push(spec.qos === 1
          ? windowedQos1(p, topicOf(i), payload, spec.window, c)
          : flood(p, topicOf(i), payload, i, flows[i] as Flow, c))
      })
    } else {
      throw new Error(`not a throughput load: ${spec.kind}`)
    }
  } catch (err) {
    for (const cl of all) cl.destroy()
    throw err
  }

  return runningFlows({ all, subscribers, stops, flows, c })
}

/** The clients and flows of a flow-windowed load, as runningFlows() drives them. */
export interface FlowLoad {
  all: WireClient[]
  subscribers: WireClient[]
  stops: Array<() => void>
  flows: Flow[]
  c: Counters
  /** More counters of the load's own (e.g. deliveries that failed a check). */
  extra?: () => Record<string, number>
  problem?: () => string | null
}

/** Writes off stalled flows every STALL_CHECK_MS; stop() lets in-flight traffic arrive, then closes every client. */
export function runningFlows(l: FlowLoad): Running {
  const { all, subscribers, stops, flows, c } = l
  const stallTimer = setInterval(() => {
    const now = performance.now()
    for (const f of flows) c.writtenOff += f.checkStall(now)
  }, STALL_CHECK_MS)

  return {
    counters: () => ({
      sent: c.sent,
      received: c.received,
      writtenOff: c.writtenOff,
      subscriberReads: subscribers.reduce((n, cl) => n + cl.reads, 0),
      socketErrors: all.reduce((n, cl) => n + cl.errors, 0),
      ...l.extra?.(),
    }),
    ...(l.problem ? { problem: l.problem } : {}),
    stop: async () => {
      clearInterval(stallTimer)
      for (const s of stops) s()
      // Let what is in flight arrive before closing: dropping 100 sockets on a broker with
      // deep queues crashes some (Aedes overflows its stack), and leftover work would bleed
      // into the next repetition's numbers.
      // Deep loads (`deep`, `fanout10k`) may hold hundreds of thousands of deliveries: more
      // time for a slow broker to deliver them (a fast one is quiet, and done, sooner).
      const depth = flows.reduce((n, f) => n + f.depth, 0)
      await drained(() => c.received, DRAIN_QUIET_MS, Math.min(DRAIN_MAX_MS * 8, Math.max(DRAIN_MAX_MS, depth / DRAIN_ASSUMED_PER_MS)))
      for (const cl of all) cl.destroy()
    },
  }
}

const DRAIN_QUIET_MS = 100
const DRAIN_MAX_MS = 2000
/** Deliveries per ms a slow broker is given credit for when its in-flight traffic drains. */
const DRAIN_ASSUMED_PER_MS = 50

/** Resolves once `count()` has not moved for `quietMs`, or after `maxMs` at most. */
export async function drained(count: () => number, quietMs: number, maxMs: number): Promise<void> {
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
