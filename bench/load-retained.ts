// The `retained` load, in two phases (a `oneshot` scenario of bench/run.ts):
//
//   start:  one client sets `topics` retained messages (`bench/<tag>/r/<i/1000>/<i%1000>`), QoS 0
//           except the last, which is QoS 1: its PUBACK says the broker has handled all of them
//           (every broker handles one connection's packets in order). `setMs`. bench/run.ts then
//           reads the broker's memory, which now holds them.
//   finish: another client subscribes to `bench/<tag>/r/#` and must receive every one of them,
//           with the RETAIN flag: `deliverMs`, from SUBSCRIBE to the last one.
//
// Each payload holds its topic's index, so the check is exact; a missing message fails finish().

import { performance } from 'node:perf_hooks'
import type { Running, StartArgs } from './load-types.js'
import { encodePublish, PacketType, withTimeout, WireClient } from './mqtt-wire.js'

const PER_WRITE = 256
const SET_MAX_MS = 120_000
const DELIVER_MAX_MS = 120_000
/** A delivery that makes no progress this long has lost what is missing. */
const QUIET_MS = 5000

export async function startRetained(args: StartArgs): Promise<Running> {
  const { port, spec, tag, dial } = args
  if (spec.kind !== 'retained') throw new Error(`not a retained load: ${spec.kind}`)
  if (args.payloadBytes < 4) throw new Error('payload must hold the topic index')
  const total = spec.topics
  const topicOf = (i: number): string => `bench/${tag}/r/${Math.floor(i / 1000)}/${i % 1000}`
  const payload = Buffer.alloc(args.payloadBytes, 0x61)
  const clients: WireClient[] = []

  const pub = await WireClient.open({ port, dial, clientId: `${tag}-rp`, timeoutMs: 30_000 })
  clients.push(pub)
  const t0 = performance.now()
  try {
    let acked: () => void = () => {}
    const done = new Promise<void>((resolve) => { acked = resolve })
    pub.framer.onPacket = (first) => { if (first >> 4 === PacketType.PUBACK) acked() }
    let next = 0
    const pump = (): void => {
      while (next < total) {
        const parts: Buffer[] = []
        for (let k = 0; k < PER_WRITE && next < total; k++, next++) {
          const last = next === total - 1
          const tpl = encodePublish(topicOf(next), payload, last ? 1 : 0)
          tpl.bytes[0] = (tpl.bytes[0] as number) | 0x01 // RETAIN
          tpl.bytes.writeUInt32LE(next, tpl.payloadOffset)
          parts.push(tpl.bytes)
        }
        if (!pub.socket.write(Buffer.concat(parts))) {
          pub.socket.once('drain', pump)
          return
        }
      }
    }
    pump()
    await withTimeout(done, SET_MAX_MS, `${total} retained messages set (the last one acknowledged)`)
  } catch (err) {
    pub.destroy()
    throw err
  }
  const setMs = performance.now() - t0

  const finish = async (): Promise<Record<string, number>> => {
    const got = new Uint8Array(total)
    let unique = 0
    let notRetained = 0
    let foreign = 0
    let lastNew = performance.now()
    const t1 = performance.now()
    const sub = await WireClient.open({
      port, dial, clientId: `${tag}-rs`, subscribe: { topic: `bench/${tag}/r/#`, qos: 0 }, timeoutMs: 30_000,
      // Installed at SUBACK: the retained messages may follow it in the same read.
      ready: (cl) => {
        cl.framer.wantBody = (first) => first >> 4 === PacketType.PUBLISH
        cl.framer.onPacket = (first, buf, start) => {
          if (first >> 4 !== PacketType.PUBLISH) return
          if ((first & 0x01) === 0) notRetained++
          const at = start + 2 + buf.readUInt16BE(start) + (((first >> 1) & 3) > 0 ? 2 : 0)
          const i = buf.readUInt32LE(at)
          if (i >= total) foreign++
          else if (got[i] === 0) {
            got[i] = 1
            unique++
            lastNew = performance.now()
          }
        }
      },
    })
    clients.push(sub)
    const end = t1 + DELIVER_MAX_MS
    while (unique < total && performance.now() < end && performance.now() - lastNew < QUIET_MS) {
      await new Promise((r) => setTimeout(r, 5))
    }
    if (unique < total) throw new Error(`got ${unique} of ${total} retained messages`)
    if (notRetained > 0) throw new Error(`${notRetained} retained messages arrived without the RETAIN flag`)
    if (foreign > 0) throw new Error(`${foreign} messages that were not set by this load`)
    return { deliverMs: lastNew - t1 }
  }

  return {
    counters: () => ({ topics: total }),
    setup: { setMs },
    finish,
    stop: async () => {
      for (const cl of clients) cl.destroy()
    },
  }
}
