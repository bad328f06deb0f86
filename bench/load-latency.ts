// Latency at a fixed, moderate rate: far below saturation, so the numbers show the cost of
// one trip through the broker rather than queueing. Publisher and subscriber live in this
// process and share one clock; the send time travels in the payload.

import { performance } from 'node:perf_hooks'
import type { Running, StartArgs } from './load-types.js'
import { encodePublish, PacketType, WireClient } from './mqtt-wire.js'

// Bounds the sample buffer whatever window run.ts asks for.
const MAX_SAMPLES = 200_000
// After a stall (GC, scheduler) skip the missed sends instead of bursting to catch up: a burst
// would measure queueing, which is not what this scenario is for.
const MAX_CATCH_UP_MS = 20

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[idx] as number
}

export async function startLatency(args: StartArgs): Promise<Running> {
  const { port, spec, tag } = args
  if (spec.kind !== 'latency') throw new Error(`not a latency load: ${spec.kind}`)
  if (args.payloadBytes < 8) throw new Error('latency payload must hold an 8-byte timestamp')
  const topic = `bench/${tag}/latency`
  const sub = await WireClient.open({ port, clientId: `${tag}-s`, subscribe: { topic, qos: 0 } })
  let publisher: WireClient
  try {
    publisher = await WireClient.open({ port, clientId: `${tag}-p` })
  } catch (err) {
    sub.destroy()
    throw err
  }

  const samples = new Float64Array(MAX_SAMPLES)
  let n = 0
  let recording = false
  let sent = 0
  let received = 0

  sub.framer.wantBody = (first) => first >> 4 === PacketType.PUBLISH
  sub.framer.onPacket = (first, buf, start) => {
    if (first >> 4 !== PacketType.PUBLISH) return
    const now = performance.now()
    received++
    const topicLen = buf.readUInt16BE(start)
    const sentAt = buf.readDoubleLE(start + 2 + topicLen)
    if (recording && n < MAX_SAMPLES) samples[n++] = now - sentAt
  }

  const tpl = encodePublish(topic, Buffer.alloc(args.payloadBytes, 0x61), 0)
  let base = performance.now()
  let sentSinceBase = 0
  const maxBurst = Math.max(1, Math.ceil(spec.rate * MAX_CATCH_UP_MS / 1000))
  // 1 ms ticks (the finest a Node timer goes) at 2,000 msg/s means ~2 sends per tick.
  const timer = setInterval(() => {
    const now = performance.now()
    let due = Math.floor((now - base) * spec.rate / 1000) - sentSinceBase
    if (due > maxBurst) {
      base = now
      sentSinceBase = 0
      due = 1
    }
    for (let i = 0; i < due; i++) {
      const msg = Buffer.from(tpl.bytes)
      msg.writeDoubleLE(performance.now(), tpl.payloadOffset)
      publisher.socket.write(msg)
    }
    if (due > 0) {
      sentSinceBase += due
      sent += due
    }
  }, 1)

  return {
    counters: () => ({ sent, received, socketErrors: sub.errors + publisher.errors }),
    beginWindow: () => {
      n = 0
      recording = true
    },
    endWindow: () => {
      recording = false
      const sorted = samples.slice(0, n).sort()
      return {
        samples: n,
        p50Us: percentile(sorted, 50) * 1000,
        p99Us: percentile(sorted, 99) * 1000,
        maxUs: n > 0 ? (sorted[n - 1] as number) * 1000 : NaN,
      }
    },
    stop: async () => {
      clearInterval(timer)
      sub.destroy()
      publisher.destroy()
    },
  }
}
