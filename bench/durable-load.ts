// The load generator of the durable scenarios (bench/durable.ts), a process of its own like
// bench/load-generator.ts, driving raw TCP clients with pre-encoded MQTT 3.1.1 packets
// (bench/mqtt-wire.ts). Everything is QoS 1; what is counted is acknowledgements: a PUBACK
// received by a publisher is a message the broker has promised to keep.
//
// Requests (IPC):
//   start {load: 'pairs'|'offline', …} set up clients, start traffic (an offline load may start
//                                      with a budget of 0 and be driven by `fill`)
//   fill {n}                           n more publishes; resolves once all are acknowledged
//   mark                               {t, cpuUs, counters, metrics}
//   stop {cleanup}                     stop sending, wait for outstanding PUBACKs, close; with
//                                      cleanup, end the persistent sessions (clean=true CONNECT)
//   sessions {…}                       create persistent sessions and queue messages for them
//   probe {clientId, expect}           reconnect a persistent session, count what it is sent

import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { serveIpc } from './ipc.js'
import type { Mark } from './load-types.js'
import {
  ackingSubscriber, DISCONNECT, encodeConnect, encodePuback, encodePublish, Framer, openMany, PacketType, withTimeout, type PublishTemplate,
  type WireClient,
} from './mqtt-wire.js'

const OPEN_CONCURRENCY = 25

export interface DurableStartArgs {
  port: number
  tag: string
  /**
   * pairs: `clients` publisher → subscriber pairs, each on its own topic, subscribers in
   * persistent sessions (clean=false) that acknowledge every delivery.
   * offline: one persistent session subscribes and disconnects; `clients` publishers publish to
   * its topic, so every message joins its offline queue.
   */
  load: 'pairs' | 'offline'
  clients: number
  /** Unacknowledged PUBLISH per publisher. */
  window: number
  payloadBytes: number
  /** Publishes allowed in all; omitted: unlimited. `fill` adds to it. */
  budget?: number
}

export interface SessionsArgs {
  port: number
  tag: string
  sessions: number
  perSession: number
  publishers: number
  window: number
  payloadBytes: number
}

interface Counters { sent: number; acked: number; delivered: number }

/** A shared allowance of publishes, and who waits for them to be acknowledged. */
class Budget {
  waiters: Array<{ target: number; resolve: () => void }> = []
  constructor(public remaining: number, readonly c: Counters) {}

  take(n: number): number {
    const k = Math.min(n, this.remaining)
    this.remaining -= k
    return k
  }

  onAck(): void {
    if (this.waiters.length === 0) return
    this.waiters = this.waiters.filter((w) => {
      if (this.c.acked < w.target) return true
      w.resolve()
      return false
    })
  }

  /** Resolves once `target` publishes in all have been acknowledged. */
  until(target: number): Promise<void> {
    if (this.c.acked >= target) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push({ target, resolve }))
  }
}

/**
 * Keeps `window` QoS 1 PUBLISH unacknowledged on one connection, cycling over `templates`
 * (one per topic); each PUBACK frees a slot, refilled once per received chunk, in one write.
 */
function qos1Publisher(client: WireClient, templates: PublishTemplate[], window: number, budget: Budget, kick: Set<() => void>): () => void {
  const c = budget.c
  let nextId = 1
  let nextTopic = 0
  let owed = window
  let running = true
  const send = (): void => {
    if (!running || owed === 0 || client.socket.destroyed) return
    const n = budget.take(owed)
    if (n === 0) return
    let size = 0
    const picks: PublishTemplate[] = []
    for (let i = 0; i < n; i++) {
      const tpl = templates[nextTopic] as PublishTemplate
      nextTopic = nextTopic + 1 === templates.length ? 0 : nextTopic + 1
      picks.push(tpl)
      size += tpl.bytes.length
    }
    const out = Buffer.allocUnsafe(size)
    let off = 0
    for (const tpl of picks) {
      tpl.bytes.copy(out, off)
      out.writeUInt16BE(nextId, off + tpl.idOffset)
      nextId = nextId === 0xffff ? 1 : nextId + 1
      off += tpl.bytes.length
    }
    owed -= n
    c.sent += n
    client.socket.write(out)
  }
  client.framer.onPacket = (first) => {
    if (first >> 4 === PacketType.PUBACK) {
      owed++
      c.acked++
      budget.onAck()
    }
  }
  client.afterChunk = send
  kick.add(send)
  setImmediate(send)
  return () => { running = false; kick.delete(send) }
}

/** Ends persistent sessions: CONNECT with clean=true (which discards the stored session), then DISCONNECT. */
async function endSessions(port: number, clientIds: string[]): Promise<void> {
  const clients = await openMany(clientIds.length, OPEN_CONCURRENCY, (i) => ({ port, clientId: clientIds[i] as string, clean: true, timeoutMs: 60_000 }))
  await Promise.all(clients.map((cl) => cl.disconnect(5000)))
}

/** Opens persistent sessions subscribed at QoS 1 and disconnects them (politely), so they stay offline. */
async function offlineSessions(port: number, ids: string[], topics: string[]): Promise<void> {
  const subs = await openMany(ids.length, OPEN_CONCURRENCY, (i) => ({
    port, clientId: ids[i] as string, clean: false, subscribe: { topic: topics[i] as string, qos: 1 }, timeoutMs: 60_000,
  }))
  await Promise.all(subs.map((s) => s.disconnect(5000)))
}

interface Running {
  counters: Counters
  budget: Budget
  kick: Set<() => void>
  all: WireClient[]
  stops: Array<() => void>
  sessionIds: string[]
  port: number
  t0: number
}

let current: Running | null = null

async function start(a: DurableStartArgs): Promise<void> {
  const payload = Buffer.alloc(a.payloadBytes, 0x61)
  const c: Counters = { sent: 0, acked: 0, delivered: 0 }
  const budget = new Budget(a.budget ?? Infinity, c)
  const r: Running = { counters: c, budget, kick: new Set(), all: [], stops: [], sessionIds: [], port: a.port, t0: performance.now() }
  try {
    if (a.load === 'pairs') {
      const topicOf = (i: number): string => `dur/${a.tag}/pair/${i}`
      r.sessionIds = Array.from({ length: a.clients }, (_, i) => `${a.tag}-s${i}`)
      const subs = await openMany(a.clients, OPEN_CONCURRENCY, (i) => ({
        port: a.port, clientId: r.sessionIds[i] as string, clean: false, subscribe: { topic: topicOf(i), qos: 1 }, timeoutMs: 30_000,
      }))
      r.all.push(...subs)
      for (const s of subs) ackingSubscriber(s, () => c.delivered++)
      const pubs = await openMany(a.clients, OPEN_CONCURRENCY, (i) => ({ port: a.port, clientId: `${a.tag}-p${i}`, timeoutMs: 30_000 }))
      r.all.push(...pubs)
      pubs.forEach((p, i) => r.stops.push(qos1Publisher(p, [encodePublish(topicOf(i), payload, 1)], a.window, budget, r.kick)))
    } else {
      const topic = `dur/${a.tag}/offline`
      r.sessionIds = [`${a.tag}-q`]
      await offlineSessions(a.port, r.sessionIds, [topic])
      const pubs = await openMany(a.clients, OPEN_CONCURRENCY, (i) => ({ port: a.port, clientId: `${a.tag}-p${i}`, timeoutMs: 30_000 }))
      r.all.push(...pubs)
      const tpl = encodePublish(topic, payload, 1)
      for (const p of pubs) r.stops.push(qos1Publisher(p, [tpl], a.window, budget, r.kick))
    }
  } catch (err) {
    for (const cl of r.all) cl.destroy()
    throw err
  }
  current = r
}

async function fill(n: number, timeoutMs: number): Promise<{ ms: number; acked: number }> {
  const r = current
  if (!r) throw new Error('no load is running')
  const t = performance.now()
  const target = r.counters.sent + (r.budget.remaining === Infinity ? 0 : r.budget.remaining) + n
  r.budget.remaining += n
  for (const k of r.kick) k()
  await withTimeout(r.budget.until(target), timeoutMs, `${n} publishes acknowledged`)
  return { ms: performance.now() - t, acked: r.counters.acked }
}

async function stop(cleanup: boolean): Promise<{ unacked: number }> {
  const r = current
  current = null
  if (!r) return { unacked: 0 }
  for (const s of r.stops) s()
  // What was sent gets its PUBACK (bounded): it is part of the store's work, and leaving it
  // half done would bleed into the next repetition.
  await withTimeout(r.budget.until(r.counters.sent), 20_000, 'outstanding PUBACKs').catch(() => {})
  const unacked = r.counters.sent - r.counters.acked
  await Promise.all(r.all.map((cl) => cl.disconnect(2000)))
  if (cleanup && r.sessionIds.length) await withTimeout(endSessions(r.port, r.sessionIds), 120_000, 'ending the sessions')
  return { unacked }
}

function mark(): Mark {
  const r = current
  if (!r) throw new Error('no load is running')
  const cpu = process.cpuUsage()
  const c = r.counters
  return {
    t: performance.now(), cpuUs: cpu.user + cpu.system,
    counters: { sent: c.sent, acked: c.acked, delivered: c.delivered, socketErrors: r.all.reduce((n, cl) => n + cl.errors, 0) },
    metrics: {},
  }
}

/**
 * `sessions` persistent sessions, each subscribed at QoS 1 to a topic of its own and then
 * offline, and `perSession` messages queued for each (published round-robin over the topics by
 * `publishers` connections, `window` unacknowledged each). Resolves once all are acknowledged.
 */
async function sessions(a: SessionsArgs): Promise<{ sessionsMs: number; publishMs: number; acked: number }> {
  const topicOf = (i: number): string => `dur/${a.tag}/s/${i}`
  const ids = Array.from({ length: a.sessions }, (_, i) => `${a.tag}-r${i}`)
  const t0 = performance.now()
  // In slices, so that thousands of sockets are never open at once.
  for (let i = 0; i < a.sessions; i += 500) {
    const slice = ids.slice(i, i + 500)
    await offlineSessions(a.port, slice, slice.map((_, k) => topicOf(i + k)))
  }
  const t1 = performance.now()
  const payload = Buffer.alloc(a.payloadBytes, 0x61)
  const total = a.sessions * a.perSession
  const kick = new Set<() => void>()
  const pubs = await openMany(a.publishers, OPEN_CONCURRENCY, (i) => ({ port: a.port, clientId: `${a.tag}-rp${i}`, timeoutMs: 30_000 }))
  const stops: Array<() => void> = []
  // A budget per publisher, `perSession` rounds over its own topics: every session gets exactly
  // `perSession` messages.
  const budgets: Array<{ budget: Budget; n: number }> = []
  try {
    pubs.forEach((p, k) => {
      const templates: PublishTemplate[] = []
      for (let i = k; i < a.sessions; i += a.publishers) templates.push(encodePublish(topicOf(i), payload, 1))
      const n = templates.length * a.perSession
      const budget = new Budget(n, { sent: 0, acked: 0, delivered: 0 })
      budgets.push({ budget, n })
      if (n > 0) stops.push(qos1Publisher(p, templates, a.window, budget, kick))
    })
    await withTimeout(Promise.all(budgets.map(({ budget, n }) => budget.until(n))), 600_000, `${total} queued messages acknowledged`)
  } finally {
    for (const s of stops) s()
    await Promise.all(pubs.map((p) => p.disconnect(2000)))
  }
  return { sessionsMs: t1 - t0, publishMs: performance.now() - t1, acked: budgets.reduce((n, b) => n + b.budget.c.acked, 0) }
}

/**
 * Reconnects persistent session `clientId` and counts the messages it is sent (acknowledging
 * them) until `expect` or the deadline. A socket of its own rather than WireClient.open: a broker
 * may send the queued messages in the same chunk as the CONNACK, which the handshake would skip.
 */
async function probe(a: { port: number; clientId: string; expect: number; timeoutMs: number }): Promise<{ received: number; ms: number }> {
  const t0 = performance.now()
  const socket = net.connect({ port: a.port, host: '127.0.0.1' })
  socket.on('error', () => {})
  const framer = new Framer()
  let received = 0
  let connack = -1
  const ids: number[] = []
  framer.wantBody = (first) => first >> 4 === PacketType.PUBLISH || first >> 4 === PacketType.CONNACK
  framer.onPacket = (first, buf, start, len) => {
    const type = first >> 4
    if (type === PacketType.CONNACK) connack = len >= 2 ? (buf[start + 1] as number) : 255
    if (type !== PacketType.PUBLISH) return
    received++
    if (((first >> 1) & 3) > 0) ids.push(buf.readUInt16BE(start + 2 + buf.readUInt16BE(start)))
  }
  socket.on('data', (chunk: Buffer) => {
    framer.push(chunk)
    if (ids.length === 0) return
    const out = Buffer.allocUnsafe(ids.length * 4)
    for (let i = 0; i < ids.length; i++) encodePuback(ids[i] as number, out, i * 4)
    ids.length = 0
    socket.write(out)
  })
  socket.write(encodeConnect(a.clientId, 60, false))
  const deadline = performance.now() + a.timeoutMs
  while (received < a.expect && performance.now() < deadline && !socket.destroyed) await new Promise((r) => setTimeout(r, 5))
  const ms = performance.now() - t0
  // A little longer, to see more than expected if there is more.
  await new Promise((r) => setTimeout(r, 100))
  socket.end(DISCONNECT)
  socket.destroy()
  if (connack !== 0) throw new Error(`probe of ${a.clientId}: CONNACK ${connack === -1 ? 'never came' : `return code ${connack}`}`)
  return { received, ms }
}

serveIpc({
  start: async (args) => {
    if (current) await stop(false)
    await start(args as DurableStartArgs)
    return null
  },
  fill: (args) => {
    const a = args as { n: number; timeoutMs?: number }
    return fill(a.n, a.timeoutMs ?? 300_000)
  },
  mark: () => mark(),
  stop: (args) => stop((args as { cleanup?: boolean } | null)?.cleanup === true),
  sessions: (args) => sessions(args as SessionsArgs),
  probe: (args) => probe(args as { port: number; clientId: string; expect: number; timeoutMs: number }),
}, () => process.exit(0))

process.on('SIGTERM', () => process.exit(0))
process.on('SIGINT', () => process.exit(0))
process.send?.({ type: 'ready' })
