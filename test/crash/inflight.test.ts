// Crash test 4: an online persistent subscriber holds 50 QoS 1 and 50 QoS 2 messages unacknowledged
// and sends PUBREC for 25 of the QoS 2 ones (in groups, each after the PUBRELs of the one before);
// the broker is SIGKILLed on a random PUBREL. After the restart and a reconnect, the broker re-sends
// every QoS 1 message as a PUBLISH with DUP on its packet identifier, PUBREL (never the PUBLISH
// again) for every QoS 2 message whose PUBREL the subscriber had seen, and the rest of the QoS 2
// ones as PUBLISH with DUP, or PUBREL for those PUBREC'd without a PUBREL seen.
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import type { Packet, PublishPacket } from '../../src/protocol/packets.js'
import { BACKENDS, type BrokerProcess, describePacket, Peer, type Rng, runTrials, skipBackend, some, subscribe, tail } from './harness.js'

const QOS1 = 50
const QOS2 = 50
const PUBRECS = 25

interface Held {
  packetId: number
  payload: string
  qos: 1 | 2
}

interface Trial {
  n: number
  version: 4 | 5
  clientId: string
  held: Held[]
  /** QoS 2 packet identifiers the subscriber PUBREC'd. */
  pubrecd: Set<number>
  /** ... and of those, the ones whose PUBREL it saw before the kill. */
  pubreled: Set<number>
  killAfter: number
}

async function crashTrial(broker: BrokerProcess, n: number, rng: Rng): Promise<Trial> {
  const version: 4 | 5 = rng.bool() ? 4 : 5
  const clientId = `inflight-sub-${n}`
  const topic = `inflight/${n}`
  const publishes: PublishPacket[] = []
  const pubreled = new Set<number>()
  const pubrecd = new Set<number>()
  let pubrels = 0
  const killAfter = rng.int(1, PUBRECS)
  let onPubrel = (): void => {}
  let sendGroup = (): void => {}
  let racePubrecs = false
  const { peer: sub } = await Peer.connect(broker.port, { clientId, version, clean: false, sessionExpiry: 3600 }, (p) =>
    p.on((packet: Packet) => {
      if (packet.type === 'publish') publishes.push(packet)
      else if (packet.type === 'pubrel') {
        pubreled.add(packet.packetId)
        if (++pubrels === killAfter) {
          if (racePubrecs) sendGroup()
          broker.killNow()
        }
        onPubrel()
      }
    }),
  )
  await subscribe(sub, 1, [{ topicFilter: topic, qos: 2 }])

  // 50 QoS 1 and 50 QoS 2 messages, interleaved at random, from an MQTT 5 publisher that completes its flows.
  const order = rng.shuffle([...Array.from({ length: QOS1 }, () => 1 as const), ...Array.from({ length: QOS2 }, () => 2 as const)])
  const { peer: pub } = await Peer.connect(broker.port, { clientId: `inflight-pub-${n}`, version: 5 })
  let completed = 0
  pub.on((p) => {
    if (p.type === 'puback' || p.type === 'pubcomp') completed++
    else if (p.type === 'pubrec') pub.send({ type: 'pubrel', packetId: p.packetId })
  })
  pub.socket.cork()
  order.forEach((qos, i) => pub.publish(topic, `inflight:${n}:${i}:q${qos}`, qos, i + 1))
  pub.socket.uncork()
  await pub.until(() => completed === order.length, 'the publisher to complete its 100 flows')
  await pub.disconnect()
  // Within the broker's in-flight window of 100: all of them are sent at once.
  await sub.until(() => publishes.length === order.length, () => `${order.length} PUBLISHes at the subscriber (${publishes.length} so far)`)
  const held: Held[] = publishes.map((p) => ({ packetId: p.packetId, payload: p.payload.toString(), qos: p.qos as 1 | 2 }))

  // PUBREC 25 of the QoS 2 ones: all at once, or in groups of 1 to 5, each group once the
  // previous one's PUBRELs are back; and sometimes the next group goes out just before the kill,
  // so some identifiers are PUBREC'd without their PUBREL seen.
  const chosen = rng.shuffle(held.filter((h) => h.qos === 2).map((h) => h.packetId)).slice(0, PUBRECS)
  const groups: number[][] = []
  const allAtOnce = rng.bool(0.3)
  for (let k = 0; k < chosen.length; ) {
    const size = allAtOnce ? chosen.length : rng.int(1, 5)
    groups.push(chosen.slice(k, k + size))
    k += size
  }
  racePubrecs = rng.bool()
  let g = 0
  sendGroup = () => {
    const group = groups[g++]
    if (group === undefined) return
    sub.socket.cork()
    for (const packetId of group) {
      pubrecd.add(packetId)
      sub.send({ type: 'pubrec', packetId })
    }
    sub.socket.uncork()
  }
  onPubrel = () => {
    if (pubrels < killAfter && [...pubrecd].every((id) => pubreled.has(id))) sendGroup()
  }
  sendGroup()
  await sub.waitClosed('the connection to close when the broker is killed')
  await broker.kill()
  assert.ok(broker.killedBySigkill(), `the broker died of SIGKILL:\n${tail(broker)}`)
  return { n, version, clientId, held, pubrecd, pubreled, killAfter }
}

async function verifyTrial(t: TestContext, broker: BrokerProcess, trial: Trial): Promise<void> {
  const after: Packet[] = []
  const { peer, connack } = await Peer.connect(broker.port, { clientId: trial.clientId, version: trial.version, clean: false, sessionExpiry: 3600 }, (p) =>
    p.on((packet) => {
      if (packet.type !== 'pingresp' && packet.type !== 'connack') after.push(packet)
    }),
  )
  assert.equal(connack.sessionPresent, true, `the session of ${trial.clientId} survived the kill`)
  // The broker re-sends what is in flight as it attaches the session, right behind the CONNACK:
  // the PINGRESP comes after all of it.
  await peer.ping()

  const problems: string[] = []
  const resent = new Map<number, Packet[]>()
  for (const p of after) {
    if (p.type !== 'publish' && p.type !== 'pubrel') {
      problems.push(`unexpected ${describePacket(p)}`)
      continue
    }
    resent.set(p.packetId, [...(resent.get(p.packetId) ?? []), p])
  }
  let asPubrel = 0
  let asPublish = 0
  for (const h of trial.held) {
    const got = resent.get(h.packetId) ?? []
    resent.delete(h.packetId)
    const what = `${h.payload} (id ${h.packetId})`
    const single = got.length === 1 ? got[0] : undefined
    if (single === undefined) {
      problems.push(`${what}: ${got.length === 0 ? 'nothing re-sent' : `re-sent ${got.length} times: ${got.map(describePacket).join(', ')}`}`)
      continue
    }
    const isDupPublish = single.type === 'publish' && single.dup && single.qos === h.qos && single.payload.toString() === h.payload
    if (h.qos === 1 || !trial.pubrecd.has(h.packetId)) {
      // Never acknowledged: the same message, with DUP, on the same identifier.
      if (!isDupPublish) problems.push(`${what}: expected PUBLISH with DUP, got ${describePacket(single)}${single.type === 'publish' ? ` dup=${single.dup} q${single.qos}` : ''}`)
      else asPublish++
    } else if (trial.pubreled.has(h.packetId)) {
      // Its PUBREL went out, so its PUBREC state was stored: PUBREL again, not the message.
      if (single.type !== 'pubrel') problems.push(`${what}: PUBREL was seen before the kill, so PUBREL is due, got ${describePacket(single)}`)
      else asPubrel++
    } else if (single.type === 'pubrel') asPubrel++
    else if (isDupPublish) asPublish++
    else problems.push(`${what}: PUBREC'd without a PUBREL seen, expected PUBREL or PUBLISH with DUP, got ${describePacket(single)}`)
  }
  for (const [packetId, packets] of resent) problems.push(`id ${packetId} was not in flight, got ${packets.map(describePacket).join(', ')}`)
  assert.deepEqual(problems, [], `what the broker re-sent after the restart (trial ${trial.n}, killed on PUBREL ${trial.killAfter}): ${some(problems, 30)}\n${tail(broker)}`)

  // Finish every flow, then the session holds nothing: a reconnect gets nothing re-sent.
  let pubrels = 0
  const expectPubrels = after.filter((p) => p.type === 'pubrel').length + after.filter((p) => p.type === 'publish' && p.qos === 2).length
  peer.on((p) => {
    if (p.type === 'pubrel') {
      pubrels++
      peer.send({ type: 'pubcomp', packetId: p.packetId })
    }
  })
  for (const p of after) {
    if (p.type === 'pubrel') {
      pubrels++
      peer.send({ type: 'pubcomp', packetId: p.packetId })
    } else if (p.type === 'publish') peer.send({ type: p.qos === 1 ? 'puback' : 'pubrec', packetId: p.packetId })
  }
  await peer.until(() => pubrels === expectPubrels, () => `PUBRELs for every QoS 2 flow (${pubrels} of ${expectPubrels})`)
  await peer.ping()
  await peer.disconnect()
  const again: Packet[] = []
  const second = await Peer.connect(broker.port, { clientId: trial.clientId, version: trial.version, clean: false, sessionExpiry: 3600 }, (p) =>
    p.on((packet) => {
      if (packet.type !== 'pingresp' && packet.type !== 'connack') again.push(packet)
    }),
  )
  await second.peer.ping()
  await second.peer.disconnect()
  assert.deepEqual(again.map(describePacket), [], 'nothing left in flight once every flow completed')
  t.diagnostic(
    `trial ${trial.n} (MQTT ${trial.version === 5 ? '5' : '3.1.1'}): killed on PUBREL ${trial.killAfter}; ${trial.pubrecd.size} PUBREC'd, ${trial.pubreled.size} PUBRELs seen before the kill; ` +
      `re-sent ${asPublish} PUBLISH with DUP, ${asPubrel} PUBREL`,
  )
}

describe('crash: in-flight messages of an online subscriber across SIGKILL', { concurrency: true }, () => {
  for (const backend of BACKENDS) {
    test(`QoS 1 re-sent with DUP, QoS 2 past PUBREC gets PUBREL, after SIGKILL (${backend})`, { skip: skipBackend(backend), timeout: 180_000 }, async (t) => {
      await runTrials(t, backend, { crash: crashTrial, verify: verifyTrial })
    })
  }
})
