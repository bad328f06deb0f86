// The `mqtt5` load: the QoS 0 pairs of bench/load-throughput.ts in MQTT 5. Every PUBLISH carries
// a message expiry interval and two user properties, which the broker must forward; every
// subscriber subscribes with a subscription identifier (its index + 1), which the broker must
// add to each delivery, and allows `topicAliasMaximum` topic aliases, which the broker may use
// to leave the topic name out of its deliveries.
//
// Checked: a subscriber's first delivery and every CHECK_EVERY-th after it are parsed in full
// (the identifier, both user properties, an expiry no longer than the one sent); every delivery
// is checked to come from the subscriber's own publisher. How many deliveries came with an
// aliased (empty) topic is counted, as information.

import type { Running, StartArgs } from './load-types.js'
import {
  floodTemplate, Flow, OPEN_CONCURRENCY, runningFlows, type Counters,
} from './load-throughput.js'
import { openMany, PacketType, type WireClient } from './mqtt-wire.js'
import { encodePublish5, payloadOffset5, readPublish5 } from './mqtt5-wire.js'

const CHECK_EVERY = 4096
const EXPIRY_SECONDS = 300

export async function startMqtt5(args: StartArgs): Promise<Running> {
  const { port, spec, tag, dial } = args
  if (spec.kind !== 'pairs5') throw new Error(`not an MQTT 5 pairs load: ${spec.kind}`)
  const payload = Buffer.alloc(args.payloadBytes, 0x61)
  const c: Counters = { sent: 0, received: 0, writtenOff: 0, misrouted: 0 }
  let aliased = 0
  let checked = 0
  let problem: string | null = null
  const all: WireClient[] = []
  const flows: Flow[] = []
  const stops: Array<() => void> = []
  const topicOf = (i: number): string => `bench/${tag}/v5/${i}`

  /** Counts, checks now and then, and feeds the pair's flow. */
  const subscriber = (client: WireClient, i: number): void => {
    let n = 0
    client.framer.wantBody = (first) => first >> 4 === PacketType.PUBLISH
    client.framer.onPacket = (first, buf, start) => {
      if (first >> 4 !== PacketType.PUBLISH) return
      c.received++
      const qos = (first >> 1) & 3
      if (buf.readUInt16BE(start) === 0) aliased++
      let at: number
      if (n++ % CHECK_EVERY === 0) {
        const seen = readPublish5(buf, start, qos)
        checked++
        at = seen.payload
        if (problem === null) {
          if (!seen.subscriptionIds.includes(i + 1)) problem = `subscriber ${i} got subscription identifier(s) [${seen.subscriptionIds.join(', ')}], not ${i + 1}`
          else if (seen.userProperties !== 2) problem = `subscriber ${i} got ${seen.userProperties} user properties, not 2`
          else if (seen.messageExpiry < 0 || seen.messageExpiry > EXPIRY_SECONDS) problem = `subscriber ${i} got message expiry ${seen.messageExpiry}, not ≤ ${EXPIRY_SECONDS}`
          else if (seen.aliased && seen.topicAlias === 0) problem = `subscriber ${i} got an empty topic name without a topic alias`
        }
      } else {
        at = payloadOffset5(buf, start, qos)
      }
      const publisher = buf.readUInt32LE(at)
      if (publisher !== i) c.misrouted = (c.misrouted ?? 0) + 1
      flows[publisher]?.observe(0, buf.readUInt32LE(at + 4))
    }
  }

  try {
    const subs = await openMany(spec.pairs, OPEN_CONCURRENCY, (i) => ({
      port, dial, clientId: `${tag}-s${i}`, subscribe: { topic: topicOf(i), qos: 0 },
      v5: { topicAliasMaximum: spec.topicAliasMaximum, subscriptionId: i + 1 },
    }))
    all.push(...subs)
    for (let i = 0; i < spec.pairs; i++) flows.push(new Flow(spec.window, 1))
    subs.forEach((s, i) => subscriber(s, i))
    const pubs = await openMany(spec.pairs, OPEN_CONCURRENCY, (i) => ({
      port, dial, clientId: `${tag}-p${i}`, v5: { topicAliasMaximum: 0, subscriptionId: 1 },
    }))
    all.push(...pubs)
    pubs.forEach((p, i) => {
      const tpl = encodePublish5(topicOf(i), payload, {
        messageExpirySeconds: EXPIRY_SECONDS,
        userProperties: [['bench', 'culex'], ['pair', String(i)]],
      })
      stops.push(floodTemplate(p, tpl, i, flows[i] as Flow, c))
    })
  } catch (err) {
    for (const cl of all) cl.destroy()
    throw err
  }

  return runningFlows({
    all, subscribers: all.slice(0, spec.pairs), stops, flows, c,
    extra: () => ({ aliased, checked, misrouted: c.misrouted ?? 0 }),
    problem: () => problem ?? ((c.misrouted ?? 0) > 0 ? `${c.misrouted} deliveries reached the wrong subscriber` : null),
  })
}
