// The `persistent` load, in two phases (a `oneshot` scenario of bench/run.ts):
//
//   start:  `subscribers` persistent sessions (MQTT 3.1.1, clean session 0) subscribe at QoS 1
//           to a topic each and disconnect; one publisher then sends `messages` QoS 1 messages
//           to each topic (round robin, `window` unacknowledged) until all are acknowledged:
//           `queueMs`, the time the broker took to take them into its offline queues.
//   finish: the sessions reconnect (clean session 0, no new SUBSCRIBE) and acknowledge what the
//           broker replays: `drainMs`, from the first CONNECT to the last new message.
//
// Each payload says which session it is for and its sequence number, so the check is exact:
// every session must get each of its messages at least once (a QoS 1 duplicate is counted, not
// an error), and nothing meant for another session; otherwise finish() fails with the count.

import { performance } from 'node:perf_hooks'
import type { Running, StartArgs } from './load-types.js'
import { OPEN_CONCURRENCY } from './load-throughput.js'
import { encodePuback, encodePublish, openMany, PacketType, withTimeout, WireClient } from './mqtt-wire.js'

/** A drain that makes no progress this long has lost what is missing. */
const QUIET_MS = 5000
const DRAIN_MAX_MS = 120_000
const QUEUE_MAX_MS = 120_000

export async function startPersistent(args: StartArgs): Promise<Running> {
  const { port, spec, tag, dial } = args
  if (spec.kind !== 'persistent') throw new Error(`not a persistent-session load: ${spec.kind}`)
  if (args.payloadBytes < 8) throw new Error('payload must hold session index and sequence number')
  const n = spec.subscribers
  const m = spec.messages
  const total = n * m
  const ids = Array.from({ length: n }, (_, i) => `${tag}-q${i}`)
  const topicOf = (i: number): string => `bench/${tag}/q/${i}`

  // Phase 1a: the sessions subscribe and go offline (DISCONNECT, so no will, no takeover).
  const subs = await openMany(n, OPEN_CONCURRENCY, (i) => ({
    port, dial, clientId: ids[i] as string, clean: false, subscribe: { topic: topicOf(i), qos: 1 }, timeoutMs: 30_000,
  }))
  await Promise.all(subs.map((s) => s.disconnect(5000)))

  // Phase 1b: one publisher fills their queues, `window` PUBLISH unacknowledged at a time.
  const pub = await WireClient.open({ port, dial, clientId: `${tag}-qp`, timeoutMs: 30_000 })
  const others: WireClient[] = [pub]
  const t0 = performance.now()
  try {
    const payload = Buffer.alloc(args.payloadBytes, 0x61)
    const templates = Array.from({ length: n }, (_, i) => encodePublish(topicOf(i), payload, 1))
    let next = 0
    let acked = 0
    let owed = spec.window
    let packetId = 1
    let allAcked: () => void = () => {}
    const done = new Promise<void>((resolve) => { allAcked = resolve })
    const send = (): void => {
      const count = Math.min(owed, total - next)
      if (count <= 0) return
      const parts: Buffer[] = []
      for (let k = 0; k < count; k++, next++) {
        const session = next % n
        const tpl = templates[session] as (typeof templates)[number]
        const b = Buffer.from(tpl.bytes)
        b.writeUInt16BE(packetId, tpl.idOffset)
        packetId = packetId === 0xffff ? 1 : packetId + 1
        b.writeUInt32LE(session, tpl.payloadOffset)
        b.writeUInt32LE(Math.floor(next / n), tpl.payloadOffset + 4)
        parts.push(b)
      }
      owed -= count
      pub.socket.write(Buffer.concat(parts))
    }
    pub.framer.onPacket = (first) => {
      if (first >> 4 !== PacketType.PUBACK) return
      owed++
      if (++acked === total) allAcked()
    }
    pub.afterChunk = send
    send()
    await withTimeout(done, QUEUE_MAX_MS, `${total} QoS 1 publishes to offline sessions acknowledged (${acked} were)`)
  } catch (err) {
    pub.destroy()
    throw err
  }
  const queueMs = performance.now() - t0

  // Phase 2 state: per session, which sequence numbers arrived.
  const got = Array.from({ length: n }, () => new Uint8Array(m))
  let unique = 0
  let duplicates = 0
  let misrouted = 0
  let lastNew = 0

  /** Records and acknowledges (one write per read) every PUBLISH a reconnected session replays. */
  const replaying = (client: WireClient, session: number): void => {
    const acks: number[] = []
    client.framer.wantBody = (first) => first >> 4 === PacketType.PUBLISH
    client.framer.onPacket = (first, buf, start) => {
      if (first >> 4 !== PacketType.PUBLISH) return
      const topicLen = buf.readUInt16BE(start)
      const qos = (first >> 1) & 3
      if (qos > 0) acks.push(buf.readUInt16BE(start + 2 + topicLen))
      const at = start + 2 + topicLen + (qos > 0 ? 2 : 0)
      const forSession = buf.readUInt32LE(at)
      const seq = buf.readUInt32LE(at + 4)
      const seen = got[session] as Uint8Array
      if (forSession !== session || seq >= m) misrouted++
      else if (seen[seq] === 1) duplicates++
      else {
        seen[seq] = 1
        unique++
        lastNew = performance.now()
      }
    }
    client.afterChunk = () => {
      if (acks.length === 0) return
      const out = Buffer.allocUnsafe(acks.length * 4)
      acks.forEach((id, k) => encodePuback(id, out, k * 4))
      acks.length = 0
      client.socket.write(out)
    }
  }

  const finish = async (): Promise<Record<string, number>> => {
    const t1 = performance.now()
    lastNew = t1
    const back = await openMany(n, OPEN_CONCURRENCY, (i) => ({
      port, dial, clientId: ids[i] as string, clean: false, timeoutMs: 30_000,
      // Installed at CONNACK: the queue may follow it in the same read.
      ready: (cl) => replaying(cl, i),
    }))
    others.push(...back)
    const end = t1 + DRAIN_MAX_MS
    while (unique < total && performance.now() < end && performance.now() - lastNew < QUIET_MS) {
      await new Promise((r) => setTimeout(r, 10))
    }
    if (misrouted > 0) throw new Error(`${misrouted} replayed messages were for another session`)
    if (unique < total) throw new Error(`lost ${total - unique} of ${total} queued messages (${n} sessions × ${m}); ${duplicates} duplicates`)
    const drainMs = lastNew - t1
    return { drainMs, drainRate: total / (drainMs / 1000), duplicates }
  }

  return {
    counters: () => ({ queued: total, unique, duplicates, misrouted }),
    setup: { queueMs, queueRate: total / (queueMs / 1000) },
    finish,
    stop: async () => {
      // Politely, so the broker has closed them before the same ids connect again below.
      await Promise.all(others.map((cl) => cl.disconnect(2000)))
      // Ends the sessions (clean session 1 discards them), so the broker does not keep queueing
      // for them in later repetitions' memory.
      const cleaners = await openMany(n, OPEN_CONCURRENCY, (i) => ({ port, dial, clientId: ids[i] as string, clean: true, timeoutMs: 30_000 }))
        .catch(() => [] as WireClient[])
      await Promise.all(cleaners.map((cl) => cl.disconnect(2000)))
    },
  }
}
