// Cluster: a session belongs to the cluster, not to a node. A persistent session made on n1
// resumes on n3 with what was published on n2 while it was offline; a client id connecting on a
// second node takes the session over (the first connection gets DISCONNECT 0x8E), losing nothing
// acknowledged under a flood; and of two CONNECTs of one id racing on two nodes, one connection
// stays.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { ConnackPacket, Packet } from '../../src/protocol/packets.js'
import { rngFor } from '../crash/harness.js'
import {
  AckingSubscriber,
  Cluster,
  connectPacket,
  duplicates,
  Flood,
  indexIn,
  missingFrom,
  type Peer,
  publishAndAck,
  skipCluster,
  some,
  subscribe,
  until,
  WAIT_MS,
} from './harness.js'

/** Messages published to the offline session. */
const OFFLINE = 200
/** Messages of the flood during a takeover. */
const TAKEOVER_FLOOD = 3000
/** Races of two CONNECTs of one client id on two nodes. */
const RACES = 50

describe('cluster: sessions across nodes', { skip: skipCluster() }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await Cluster.start(['n1', 'n2', 'n3'])
  })
  after(() => cluster?.dispose())

  for (const version of [4, 5] as const) {
    test(`a persistent session (MQTT ${version === 5 ? '5' : '3.1.1'}) made on n1 resumes on n3 with the ${OFFLINE} messages published on n2 meanwhile, in order`, { timeout: 60_000 }, async () => {
      const clientId = `resume-${version}`
      const topic = `resume/${version}`
      const tag = `resume${version}`
      const options = { clientId, version, clean: false, sessionExpiry: 3600 }
      const first = await cluster.connect('n1', options)
      assert.equal(first.connack.sessionPresent, false, 'a new session')
      await subscribe(first.peer, 1, [{ topicFilter: topic, qos: 1 }])
      await first.peer.disconnect()

      const { peer: pub } = await cluster.connect('n2', { clientId: `resume-pub-${version}`, version: 4 })
      const flood = new Flood(pub, { topic, qos: 1, tag, total: OFFLINE }).start()
      await flood.finished()
      assert.deepEqual(flood.refused, [], 'PUBACK failure codes')
      await pub.disconnect()

      let sub!: AckingSubscriber
      const { connack } = await cluster.connect('n3', options, (p) => (sub = new AckingSubscriber(p)))
      assert.equal(connack.sessionPresent, true, `CONNACK session present on n3 for the session made on n1\n${cluster.logs()}`)
      await until(() => sub.delivered.size >= OFFLINE || sub.peer.closed, WAIT_MS, () => `the ${OFFLINE} queued messages on n3 (${sub.delivered.size} so far)\n${cluster.logs()}`)
      // The subscription moved too: a message published on n1 now reaches the client on n3, after the queue.
      await cluster.roundTrip('n1', topic, `${tag}:end`, sub)
      assert.deepEqual(
        sub.log.map((x) => x.payload),
        [...flood.payloads(), `${tag}:end`],
        `the queued messages, each once, in publish order, then the marker from n1 (missing: ${some(missingFrom(flood.payloads(), [sub]))})`,
      )
    })
  }

  test('takeover: the same client id on n2 closes the n1 connection with DISCONNECT 0x8E; CONNACK session present 1', { timeout: 60_000 }, async () => {
    const options = { clientId: 'takeover', version: 5 as const, clean: false, sessionExpiry: 3600 }
    const first = await cluster.connect('n1', options, (p) => (p.record = true))
    await subscribe(first.peer, 1, [{ topicFilter: 'takeover/t', qos: 1 }])
    await first.peer.ping()

    let sub!: AckingSubscriber
    const second = await cluster.connect('n2', options, (p) => (sub = new AckingSubscriber(p)))
    assert.equal(second.connack.sessionPresent, true, 'CONNACK session present on n2')
    await first.peer.waitClosed(`the n1 connection to close after the takeover on n2\n${cluster.logs()}`)
    const disconnects = first.peer.packets.filter((p) => p.type === 'disconnect')
    assert.deepEqual(
      disconnects.map((p) => p.reasonCode),
      [0x8e],
      `DISCONNECT packets the n1 connection received: ${JSON.stringify(disconnects)}`,
    )
    await cluster.roundTrip('n3', 'takeover/t', 'takeover:after', sub)
    await second.peer.ping()
    assert.equal(second.peer.closed, false, 'the n2 connection stays open')
  })

  test(`takeover under a flood: every message PUBACKed to a publisher on n3 reaches the client (on n1, then on n2)`, { timeout: 120_000 }, async (t) => {
    const rng = rngFor(t)
    const takeoverAt = rng.int(100, 1500)
    const options = { clientId: 'takeover-flood', version: 5 as const, clean: false, sessionExpiry: 3600 }
    const topic = 'takeover-flood/t'
    const tag = 'tf'
    let sub1!: AckingSubscriber
    const first = await cluster.connect('n1', options, (p) => {
      p.record = true
      sub1 = new AckingSubscriber(p)
    })
    await subscribe(first.peer, 1, [{ topicFilter: topic, qos: 1 }])

    let sub2: AckingSubscriber | undefined
    let takeover: Promise<{ peer: Peer; connack: ConnackPacket }> | undefined
    const { peer: pub } = await cluster.connect('n3', { clientId: 'takeover-flood-pub', version: 5 })
    const flood = new Flood(pub, {
      topic,
      qos: 1,
      tag,
      total: TAKEOVER_FLOOD,
      onAck: (n) => {
        if (n !== takeoverAt) return
        takeover = cluster.connect('n2', options, (p) => (sub2 = new AckingSubscriber(p)))
        // Awaited below, after the flood; a failure meanwhile is not an unhandled rejection.
        takeover.catch(() => {})
      },
    }).start()
    await flood.finished()
    assert.ok(takeover !== undefined, 'the takeover started')
    const second = await takeover
    assert.equal(second.connack.sessionPresent, true, 'CONNACK session present on n2')
    await first.peer.waitClosed('the n1 connection to close after the takeover')
    const reasons = first.peer.packets.filter((p) => p.type === 'disconnect').map((p) => p.reasonCode)
    assert.deepEqual(reasons, [0x8e], 'DISCONNECT reason codes to the n1 connection')
    assert.deepEqual(flood.refused, [], 'PUBACK failure codes')

    // A marker behind the flood from the same publisher: once it is in, everything before it is.
    await publishAndAck(pub, topic, `${tag}:end`, 1)
    const subs = [sub1, sub2 as AckingSubscriber]
    await (sub2 as AckingSubscriber).waitFor(`${tag}:end`)
    const missing = missingFrom(flood.acked, subs)
    const dups = duplicates(subs, (p) => indexIn(tag, p) !== undefined)
    t.diagnostic(
      `takeover at PUBACK ${takeoverAt}: ${sub1.delivered.size} delivered on n1, ${(sub2 as AckingSubscriber).delivered.size} on n2, ${dups.length} duplicated`,
    )
    assert.deepEqual(missing, [], `PUBACKed messages that reached neither connection (${missing.length}: ${some(missing)})\n${cluster.logs()}`)
  })

  test(`${RACES} races: CONNECTs of one client id on n1 and n2 at the same moment leave exactly one connection open`, { timeout: 120_000 }, async (t) => {
    interface Side {
      node: string
      peer: Peer
      packets: Packet[]
      accepted: boolean
    }
    const survivors: Array<{ clientId: string; side: Side }> = []
    const wins = new Map<string, number>()
    /** How the losers ended: 'CONNACK 0x00 then DISCONNECT 0x8e', 'closed before CONNACK', ... */
    const losers = new Map<string, number>()
    for (let i = 0; i < RACES; i++) {
      const clientId = `race-${i}`
      // Every other race over a persistent session.
      const options = i % 2 === 0 ? { clientId, version: 5 as const } : { clientId, version: 5 as const, clean: false, sessionExpiry: 60 }
      const sides: Side[] = await Promise.all(
        ['n1', 'n2'].map(async (node) => {
          const peer = await cluster.tcp(node, 5)
          const side: Side = { node, peer, packets: [], accepted: false }
          peer.on((p) => {
            side.packets.push(p)
            if (p.type === 'connack' && p.returnCode === 0) side.accepted = true
          })
          return side
        }),
      )
      // Both CONNECTs in the same turn of the event loop.
      for (const side of sides) side.peer.send(connectPacket(options))
      const settled = (s: Side): boolean => s.peer.closed || s.packets.some((p) => p.type === 'connack')
      await until(
        () => sides.every(settled) && sides.some((s) => s.peer.closed),
        WAIT_MS,
        () => `race ${i}: one of the two connections to close (${sides.map((s) => `${s.node}: ${s.peer.closed ? 'closed' : 'open'} after ${s.packets.map((p) => p.type).join(',') || 'nothing'}`).join('; ')})\n${cluster.logs()}`,
      )
      const open = sides.filter((s) => !s.peer.closed)
      assert.equal(open.length, 1, `race ${i}: connections left open: ${open.map((s) => s.node).join(', ') || 'none'}`)
      const winner = open[0] as Side
      assert.ok(winner.accepted, `race ${i}: the open connection on ${winner.node} has an accepting CONNACK`)
      await winner.peer.ping()
      for (const loser of sides.filter((s) => s !== winner)) {
        const ending = loser.packets.map((p) => (p.type === 'connack' ? `CONNACK 0x${p.returnCode.toString(16)}` : p.type === 'disconnect' ? `DISCONNECT 0x${(p.reasonCode ?? 0).toString(16)}` : p.type))
        const key = ending.length === 0 ? 'closed before CONNACK' : ending.join(' then ')
        losers.set(key, (losers.get(key) ?? 0) + 1)
        if (!loser.accepted) continue
        const reasons = loser.packets.filter((p) => p.type === 'disconnect').map((p) => p.reasonCode)
        assert.deepEqual(reasons, [0x8e], `race ${i}: the accepted, then closed, connection on ${loser.node} got DISCONNECT 0x8E`)
      }
      wins.set(winner.node, (wins.get(winner.node) ?? 0) + 1)
      survivors.push({ clientId, side: winner })
    }
    // Later too: no survivor was closed after its race was decided.
    for (const { clientId, side } of survivors) {
      assert.equal(side.peer.closed, false, `${clientId}: the connection on ${side.node} that won its race was closed later`)
      await side.peer.ping()
    }
    t.diagnostic(`winners: ${[...wins].map(([node, n]) => `${node} ${n}`).join(', ')}; losers: ${[...losers].map(([how, n]) => `${how} (${n})`).join(', ')}`)
    for (const { side } of survivors) side.peer.destroy()
  })
})
