// Cluster: shared subscriptions when members fail or are all away.
//
// (a) `$share/sfk/sfk/x/#` has a member on n1 that never acknowledges (a clean session, at most 10
//     messages unacknowledged) and a member on n2; a publisher on n3 floods the group, then n1 is
//     killed with SIGKILL. After its lease, what n1's member held unacknowledged (in flight and
//     queued behind its receive maximum) goes to the member on n2: every message of the flood
//     reaches it, and none of those n1's member held had reached it before the kill.
// (b) Every member of `$share/sfo/sfo/y/#` is a persistent MQTT 5 session (expiry > 0), one made
//     on n1 and one on n2, and all are offline while a publisher on n3 sends to the group. The
//     members come back (one on a node it was not on, one on its own node): every message reaches
//     exactly one of them, none is lost.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Packet } from '../../src/protocol/packets.js'
import {
  AckingSubscriber,
  Cluster,
  duplicates,
  Flood,
  indexIn,
  missingFrom,
  publishAndAck,
  skipCluster,
  some,
  subscribe,
  TAKEOVER_MS,
  until,
  WAIT_MS,
  waitDelivered,
} from './harness.js'

/** Messages of the flood before the kill. */
const KILL_FLOOD = 200
/** The receive maximum of the member that never acknowledges. */
const RECEIVE_MAX = 10
/** Messages published while every member is offline. */
const OFFLINE = 200
/** At most this many markers to reach every member. */
const MAX_MARKERS = 100

describe('cluster: shared subscriptions when members fail or are away', { skip: skipCluster() }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await Cluster.start(['n1', 'n2', 'n3'])
  })
  after(() => cluster?.dispose())

  test(`a member on n1 holding unacknowledged messages, n1 killed with SIGKILL: after the lease they go to the member on n2`, { timeout: 60_000 }, async (t) => {
    await Promise.all(['n1', 'n2', 'n3'].map((id) => cluster.ensure(id)))
    const tag = 'sfk'
    const filter = '$share/sfk/sfk/x/#'
    // On n1: a clean session that never acknowledges, and takes at most RECEIVE_MAX at once.
    const held: string[] = []
    const { peer: holder } = await cluster.connect('n1', { clientId: 'sfk-holder', version: 5, properties: { receiveMaximum: RECEIVE_MAX } }, (p) =>
      p.on((packet: Packet) => {
        if (packet.type === 'publish') held.push(packet.payload.toString())
      }),
    )
    await subscribe(holder, 1, [{ topicFilter: filter, qos: 1 }])
    let onN2!: AckingSubscriber
    const { peer: n2Peer } = await cluster.connect('n2', { clientId: 'sfk-n2', version: 5 }, (p) => (onN2 = new AckingSubscriber(p)))
    await subscribe(n2Peer, 1, [{ topicFilter: filter, qos: 1 }])

    const { peer: pub } = await cluster.connect('n3', { clientId: 'sfk-pub', version: 5 })
    const flood = new Flood(pub, { topic: 'sfk/x/a', qos: 1, tag, total: KILL_FLOOD }).start()
    await flood.finished()
    assert.deepEqual(flood.refused, [], 'PUBACK failure codes')
    // n1's member fills its receive maximum (n1 gets about half of the flood); PINGREQ: nothing more is on its way to it.
    await holder.until(() => held.length >= RECEIVE_MAX, () => `the member on n1 to hold ${RECEIVE_MAX} messages (holds ${held.length}; n2's member got ${onN2.delivered.size})\n${cluster.logs()}`)
    await holder.ping()
    const heldAtKill = [...held]
    const atN2BeforeKill = new Set(onN2.delivered.keys())

    const t0 = performance.now()
    await cluster.kill('n1')
    await holder.waitClosed('the connection of the member on n1 to close when n1 is killed')
    await waitDelivered(flood.payloads(), [onN2], TAKEOVER_MS, "every message of the flood at n2's member after n1's death", cluster)
    const allInMs = Math.round(performance.now() - t0)
    // The fence: a marker behind the flood, from the same publisher, to n2's member (the group's only one now).
    await publishAndAck(pub, 'sfk/x/a', `${tag}:marker`, 1)
    await onN2.waitFor(`${tag}:marker`)

    const beforeKill = heldAtKill.filter((x) => atN2BeforeKill.has(x))
    const dups = duplicates([onN2], (p) => indexIn(tag, p) !== undefined)
    t.diagnostic(
      `n1's member held ${heldAtKill.length} unacknowledged (${some(heldAtKill, 10)}); n2's member had ${atN2BeforeKill.size} before the kill, ` +
        `${onN2.delivered.size} distinct after; every message in ${allInMs} ms after the kill; ${dups.length} delivered twice to n2's member`,
    )
    assert.deepEqual(beforeKill, [], "messages both held by n1's member and delivered to n2's member before the kill")
    assert.deepEqual(missingFrom(heldAtKill, [onN2]), [], "messages n1's member held, never delivered to n2's member")
    assert.ok(
      heldAtKill.every((p) => indexIn(tag, p) !== undefined),
      `n1's member received only flood messages: ${some(heldAtKill)}`,
    )
  })

  test(`all members persistent and offline (one made on n1, one on n2): the ${OFFLINE} QoS 1 messages published meanwhile each reach exactly one member when they come back`, { timeout: 60_000 }, async (t) => {
    await Promise.all(['n1', 'n2', 'n3'].map((id) => cluster.ensure(id)))
    const tag = 'sfo'
    const filter = '$share/sfo/sfo/y/#'
    const members = [
      { made: 'n1', back: 'n3', options: { clientId: 'sfo-m1', version: 5 as const, clean: false, sessionExpiry: 3600 } },
      { made: 'n2', back: 'n2', options: { clientId: 'sfo-m2', version: 5 as const, clean: false, sessionExpiry: 3600 } },
    ]
    for (const m of members) {
      const { peer, connack } = await cluster.connect(m.made, m.options)
      assert.equal(connack.sessionPresent, false, `a new session for ${m.options.clientId}`)
      await subscribe(peer, 1, [{ topicFilter: filter, qos: 1 }])
      await peer.disconnect()
    }

    const { peer: pub } = await cluster.connect('n3', { clientId: 'sfo-pub', version: 5 })
    const flood = new Flood(pub, { topic: 'sfo/y/a', qos: 1, tag, total: OFFLINE }).start()
    await flood.finished()
    assert.deepEqual(flood.refused, [], 'PUBACK failure codes')

    const subs: AckingSubscriber[] = []
    for (const m of members) {
      let sub!: AckingSubscriber
      const { connack } = await cluster.connect(m.back, m.options, (p) => (sub = new AckingSubscriber(p)))
      assert.equal(connack.sessionPresent, true, `CONNACK session present for ${m.options.clientId} (made on ${m.made}) on ${m.back}\n${cluster.logs()}`)
      subs.push(sub)
    }
    await waitDelivered(flood.payloads(), subs, WAIT_MS, 'every message published while all members were offline, at some member', cluster)

    // The fence: markers behind the flood, one at a time, until each member has had one (each
    // session's queue is delivered before anything newer).
    let markers = 0
    while (!subs.every((s) => [...s.delivered.keys()].some((p) => p.startsWith(`${tag}:marker:`)))) {
      assert.ok(markers < MAX_MARKERS, `${MAX_MARKERS} markers did not reach every member: ${subs.map((s) => s.delivered.size).join(', ')}`)
      const marker = `${tag}:marker:${markers++}`
      await publishAndAck(pub, 'sfo/y/a', marker, 1)
      await until(() => subs.some((s) => s.delivered.has(marker)), WAIT_MS, () => `marker ${marker} at some member`)
    }

    const counts = subs.map((s) => [...s.delivered.keys()].filter((p) => indexIn(tag, p) !== undefined).length)
    const dups = duplicates(subs, (p) => indexIn(tag, p) !== undefined)
    t.diagnostic(`${members.map((m, i) => `${m.options.clientId} (made on ${m.made}, back on ${m.back}): ${counts[i]}`).join('; ')}; ${markers} markers`)
    assert.deepEqual(missingFrom(flood.payloads(), subs), [], 'messages lost')
    assert.deepEqual(dups, [], 'messages delivered more than once (to one member or to both)')
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      OFFLINE,
      'deliveries in all',
    )
  })
})
