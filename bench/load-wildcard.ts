// The `wildcard` load: the QoS 0 pairs of bench/load-throughput.ts, but each subscriber holds a
// `+` filter (`bench/<tag>/w/<i>/+`) and the broker also holds `idleFilters` subscriptions of
// idle clients that share those prefixes and match nothing. It measures routing through a
// wildcard trie with siblings to rule out, not a map lookup of one literal topic.
//
// Checked on every delivery (cheaply): a subscriber only ever gets its own publisher's messages,
// and the idle clients get none.

import type { Running, StartArgs } from './load-types.js'
import {
  countingSubscriber, floodTemplate, Flow, OPEN_CONCURRENCY, runningFlows, type Counters,
} from './load-throughput.js'
import { encodePublish, openMany, PacketType, type WireClient } from './mqtt-wire.js'

/**
 * Idle filter `j` (of the load tagged `tag`): five shapes that share prefixes with the pairs'
 * topics (`bench/<tag>/w/<i>/m`) without matching any of them.
 */
export function idleFilter(tag: string, j: number): string {
  const n = Math.floor(j / 5)
  switch (j % 5) {
    case 0: return `bench/${tag}/w/${n}/m/+` // one level deeper than a pair's topic
    case 1: return `bench/${tag}/w/${n}/n` // a sibling leaf
    case 2: return `bench/${tag}/w/+/x${n}` // a wildcard level, another leaf
    case 3: return `bench/${tag}/x${n}/#` // a sibling branch, multi-level
    default: return `+/${tag}/w/${n}/+/z` // a leading wildcard, one level too deep
  }
}

export async function startWildcard(args: StartArgs): Promise<Running> {
  const { port, spec, tag, dial } = args
  if (spec.kind !== 'wildcard') throw new Error(`not a wildcard load: ${spec.kind}`)
  const payload = Buffer.alloc(args.payloadBytes, 0x61)
  const c: Counters = { sent: 0, received: 0, writtenOff: 0, misrouted: 0 }
  let idleReceived = 0
  const all: WireClient[] = []
  const flows: Flow[] = []
  const stops: Array<() => void> = []
  const topicOf = (i: number): string => `bench/${tag}/w/${i}/m`

  try {
    // The non-matching filters first, so every pair's route is looked up among them.
    const perIdle = Math.ceil(spec.idleFilters / spec.idleClients)
    const idle = await openMany(spec.idleClients, OPEN_CONCURRENCY, (k) => ({
      port, dial, clientId: `${tag}-i${k}`, timeoutMs: 30_000,
      subscribe: {
        topic: Array.from({ length: Math.min(perIdle, spec.idleFilters - k * perIdle) }, (_, x) => idleFilter(tag, k * perIdle + x)),
        qos: 0,
      },
    }))
    all.push(...idle)
    for (const cl of idle) {
      cl.framer.onPacket = (first) => { if (first >> 4 === PacketType.PUBLISH) idleReceived++ }
    }
    const subs = await openMany(spec.pairs, OPEN_CONCURRENCY, (i) => ({
      port, dial, clientId: `${tag}-s${i}`, subscribe: { topic: `bench/${tag}/w/${i}/+`, qos: 0 },
    }))
    all.push(...subs)
    for (let i = 0; i < spec.pairs; i++) flows.push(new Flow(spec.window, 1))
    subs.forEach((s, i) => countingSubscriber(s, 0, flows, c, undefined, i))
    const pubs = await openMany(spec.pairs, OPEN_CONCURRENCY, (i) => ({ port, dial, clientId: `${tag}-p${i}` }))
    all.push(...pubs)
    pubs.forEach((p, i) => stops.push(floodTemplate(p, encodePublish(topicOf(i), payload, 0), i, flows[i] as Flow, c)))
  } catch (err) {
    for (const cl of all) cl.destroy()
    throw err
  }

  return runningFlows({
    all, subscribers: all.slice(spec.idleClients, spec.idleClients + spec.pairs), stops, flows, c,
    extra: () => ({ misrouted: c.misrouted ?? 0, idleReceived }),
    problem: () => {
      if ((c.misrouted ?? 0) > 0) return `${c.misrouted} deliveries reached the wrong subscriber`
      if (idleReceived > 0) return `${idleReceived} deliveries matched a filter that should not match`
      return null
    },
  })
}
