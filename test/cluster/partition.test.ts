// Cluster: a node cut off from Redis (a TCP proxy between n1 and Redis; n2 and n3 reach Redis
// directly). Within about a lease n1 stops serving: it drops its clients (MQTT 5: DISCONNECT 0x88
// Server unavailable), refuses new ones (CONNACK 0x88, 3.1.1: 3) and acknowledges nothing; once
// its lease has run out the survivors publish the wills of its clients, each exactly once, and
// keep what was published meanwhile for its persistent session. When the cut heals n1 serves
// again by itself: clients connect, the session resumes on it with everything queued, messages
// cross to and from it, and no will is published a second time.
//
// Two cuts, one after the other on the same cluster (n1 rejoins after the first): connections
// reset and new ones refused (`reset`), then everything held without an answer (`blackhole`).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { ConnackPacket, Packet } from '../../src/protocol/packets.js'
import {
  AckingSubscriber,
  Cluster,
  type CutStyle,
  Flood,
  LEASE_MS,
  missingFrom,
  observeQuiet,
  type Peer,
  publishAndAck,
  skipCluster,
  some,
  subscribe,
  TAKEOVER_MS,
  TcpProxy,
  until,
  WAIT_MS,
} from './harness.js'

/** Clients with a will on n1 when it is cut off. */
const WILLS = 8
/** Messages published on n2, while n1 is cut off, for the persistent session held on n1. */
const QUEUED = 20
/** n1 must have dropped its clients this long after the cut, at most: "about one lease", allowing three. */
const DROP_MS = 3 * LEASE_MS

describe('cluster: a node partitioned from Redis', { skip: skipCluster() }, () => {
  let cluster: Cluster
  let proxy: TcpProxy
  before(async () => {
    cluster = await Cluster.start(['n2', 'n3'])
    proxy = await TcpProxy.start(cluster.redis.port)
    await cluster.startNode('n1', [], proxy.url)
  })
  after(async () => {
    await cluster?.dispose()
    await proxy?.close()
  })

  for (const style of ['reset', 'blackhole'] as const satisfies readonly CutStyle[]) {
    test(`cut (${style}): n1 drops its clients, refuses CONNECTs and acknowledges nothing; the survivors publish its clients' wills once; healed, n1 serves again and no will comes twice`, { timeout: 60_000 }, async (t) => {
      const p = `part-${style}`
      assert.equal(cluster.node('n1').alive, true, `n1 runs\n${cluster.logs()}`)
      // Whatever an earlier test left: the link healed, n1 serving.
      if (proxy.cutStyle !== undefined) proxy.heal()
      const probe = await cluster.connectRetrying('n1', { clientId: `${p}-probe`, version: 4 }, () => {}, TAKEOVER_MS)
      await probe.peer.disconnect()
      // The watcher, on a survivor.
      let watcher!: AckingSubscriber
      const w = await cluster.connect('n2', { clientId: `${p}-watcher`, version: 5 }, (peer) => (watcher = new AckingSubscriber(peer)))
      await subscribe(w.peer, 1, [{ topicFilter: `${p}/#`, qos: 1 }])

      // On n1: clients with wills (3.1.1 and 5, each recording what it receives), a persistent
      // session, and a publisher.
      const willOf = (i: number): string => `${p}:will:${i}`
      const onN1: Array<{ peer: Peer; version: 4 | 5 }> = []
      for (let i = 0; i < WILLS; i++) {
        const version = i % 2 === 0 ? 5 : 4
        const { peer } = await cluster.connect(
          'n1',
          { clientId: `${p}-will-${i}`, version, will: { topic: `${p}/will/${i}`, payload: Buffer.from(willOf(i)), qos: 1, retain: false } },
          (peer) => (peer.record = true),
        )
        onN1.push({ peer, version })
      }
      const persistent = { clientId: `${p}-persistent`, version: 5 as const, clean: false, sessionExpiry: 3600 }
      const held = await cluster.connect('n1', persistent, (peer) => (peer.record = true))
      await subscribe(held.peer, 1, [{ topicFilter: `${p}-persist/q`, qos: 1 }])
      onN1.push({ peer: held.peer, version: 5 })
      // Publishers: a store failure is PUBACK 0x80 (not accepted) for MQTT 5, a closed connection for 3.1.1.
      const pubs = new Map<4 | 5, Peer>()
      for (const version of [4, 5] as const) {
        const { peer } = await cluster.connect('n1', { clientId: `${p}-pub-n1-${version}`, version }, (peer) => (peer.record = true))
        pubs.set(version, peer)
        onN1.push({ peer, version })
      }

      // Routes from n1 to the watcher are in place, and nothing else reached it.
      await cluster.roundTrip('n1', `${p}/fence`, `${p}:fence:before`, watcher)
      assert.deepEqual([...watcher.delivered.keys()], [`${p}:fence:before`], 'nothing but the fence before the cut')

      // --- The cut ---------------------------------------------------------------------------
      const t0 = performance.now()
      proxy.cut(style)
      // Right behind it, a QoS 1 PUBLISH from each publisher on n1, to a topic the watcher on n2 subscribes to.
      const cutPayload = (version: 4 | 5): string => `${p}:during-cut:${version}`
      for (const [version, peer] of pubs) peer.publish(`${p}/data`, cutPayload(version), 1, 7)

      await until(
        () => onN1.every(({ peer }) => peer.closed),
        DROP_MS + WAIT_MS,
        () => `n1 to drop its ${onN1.length} clients after the cut (${onN1.filter(({ peer }) => !peer.closed).length} still connected)\n${cluster.logs()}`,
      )
      const droppedMs = Math.round(performance.now() - t0)
      const disconnects = onN1.flatMap(({ peer, version }) => peer.packets.filter((x: Packet) => x.type === 'disconnect').map((x) => ({ version, code: x.reasonCode ?? 0 })))
      const pubacks = (version: 4 | 5): string[] =>
        (pubs.get(version) as Peer).packets.flatMap((x: Packet) => (x.type === 'puback' ? [`${x.packetId}:0x${(x.reasonCode ?? 0).toString(16)}`] : []))

      // While cut: CONNECTs are refused.
      const refused5 = await cluster.tryConnect('n1', { clientId: `${p}-refused-5`, version: 5 })
      const refused4 = await cluster.tryConnect('n1', { clientId: `${p}-refused-4`, version: 4 })

      // Meanwhile on n2, for the persistent session n1 held: acknowledged by n2, Redis reachable.
      const { peer: pubN2 } = await cluster.connect('n2', { clientId: `${p}-pub-n2`, version: 4 })
      const flood = new Flood(pubN2, { topic: `${p}-persist/q`, qos: 1, tag: `${p}-q`, total: QUEUED }).start()
      await flood.finished()
      assert.deepEqual(flood.refused, [], 'PUBACK failure codes on n2 while n1 is cut off')

      // The wills, by a survivor once n1's lease ran out.
      const expected = Array.from({ length: WILLS }, (_, i) => willOf(i))
      await until(
        () => expected.every((x) => watcher.delivered.has(x)) || w.peer.closed,
        TAKEOVER_MS,
        () => `every will of n1's clients at the watcher on n2 (missing: ${some(expected.filter((x) => !watcher.delivered.has(x)))})\n${cluster.logs()}`,
      )
      const willsMs = Math.round(performance.now() - t0)
      // Still cut, after the survivors adopted n1's sessions: still refused.
      const refusedLater = await cluster.tryConnect('n1', { clientId: `${p}-refused-later`, version: 5 })
      const cutFor = Math.round(performance.now() - t0)

      t.diagnostic(
        `${style}: n1 dropped its ${onN1.length} clients ${droppedMs} ms after the cut (lease ${LEASE_MS} ms), ${disconnects.length} DISCONNECT(s) ` +
          `(${disconnects.map((d) => `v${d.version}:0x${d.code.toString(16)}`).join(' ')}); PUBACKs after the cut: 3.1.1 [${pubacks(4).join(' ')}], 5 [${pubacks(5).join(' ')}]; ` +
          `every will in ${willsMs} ms; proxy resets ${proxy.resets}, accepted ${proxy.accepted}`,
      )
      assert.ok(droppedMs <= DROP_MS, `n1 dropped its clients ${droppedMs} ms after the cut, more than ${DROP_MS} ms (3 leases)\n${cluster.logs()}`)
      assert.deepEqual(
        disconnects.filter((d) => d.version !== 5 || d.code !== 0x88).map((d) => `v${d.version}:0x${d.code.toString(16)}`),
        [],
        'DISCONNECTs other than 0x88 (Server unavailable) to MQTT 5 clients',
      )
      assert.deepEqual(pubacks(4), [], 'n1 acknowledged a QoS 1 PUBLISH of a 3.1.1 client sent after the cut')
      assert.deepEqual(
        pubacks(5).filter((x) => !x.endsWith(':0x80')),
        [],
        'n1 acknowledged a QoS 1 PUBLISH of an MQTT 5 client sent after the cut other than with 0x80 (not accepted)',
      )
      const codeOf = (c: ConnackPacket | undefined): string => (c === undefined ? 'closed before CONNACK' : `CONNACK 0x${c.returnCode.toString(16)}`)
      assert.equal(codeOf(refused5.connack), 'CONNACK 0x88', 'MQTT 5 CONNECT to n1 while cut off')
      assert.equal(codeOf(refused4.connack), 'CONNACK 0x3', 'MQTT 3.1.1 CONNECT to n1 while cut off')
      assert.equal(codeOf(refusedLater.connack), 'CONNACK 0x88', `MQTT 5 CONNECT to n1 still cut off ${cutFor} ms after the cut`)

      // Through both survivors: every will they published is in; each exactly once so far.
      await cluster.roundTrip('n2', `${p}/fence`, `${p}:fence:n2:cut`, watcher)
      await cluster.roundTrip('n3', `${p}/fence`, `${p}:fence:n3:cut`, watcher)
      const willCounts = (): string[] => expected.map((x) => `${x}x${watcher.delivered.get(x) ?? 0}`).filter((c) => !c.endsWith('x1'))
      assert.deepEqual(willCounts(), [], `wills of n1's clients not published exactly once by the survivors while n1 is cut off\n${cluster.logs()}`)

      // --- The heal --------------------------------------------------------------------------
      const atHeal = watcher.log.length
      const t1 = performance.now()
      proxy.heal()
      let subN1!: AckingSubscriber
      const back = await cluster.connectRetrying('n1', { clientId: `${p}-after`, version: 5 }, (peer) => (subN1 = new AckingSubscriber(peer)), TAKEOVER_MS)
      const healMs = Math.round(performance.now() - t1)
      await subscribe(back.peer, 1, [{ topicFilter: `${p}-to-n1`, qos: 1 }])
      // Messages cross to and from n1.
      await cluster.roundTrip('n2', `${p}-to-n1`, `${p}:n2-to-n1`, subN1)
      await cluster.roundTrip('n3', `${p}-to-n1`, `${p}:n3-to-n1`, subN1)
      await cluster.roundTrip('n1', `${p}/fence`, `${p}:n1-to-n2`, watcher)

      // The persistent session n1 held when it was cut off resumes on n1 with what n2 acknowledged.
      let resumed!: AckingSubscriber
      const again = await cluster.connectRetrying('n1', persistent, (peer) => (resumed = new AckingSubscriber(peer)), TAKEOVER_MS)
      assert.equal(again.connack.sessionPresent, true, `CONNACK session present on the healed n1 for the session it held when cut off\n${cluster.logs()}`)
      await publishAndAck(pubN2, `${p}-persist/q`, `${p}-q:end`, 1)
      await resumed.waitFor(`${p}-q:end`)
      const lost = missingFrom(flood.acked, [resumed])

      // No second will: fences through every node, one more lease, fences again.
      for (const node of ['n1', 'n2', 'n3']) await cluster.roundTrip(node, `${p}/fence`, `${p}:fence:${node}`, watcher)
      await observeQuiet(LEASE_MS)
      for (const node of ['n1', 'n2', 'n3']) await cluster.roundTrip(node, `${p}/fence`, `${p}:fence:${node}:last`, watcher)

      const lateWills = watcher.log.slice(atHeal).filter((x) => expected.includes(x.payload))
      t.diagnostic(
        `${style}: n1 accepted again ${healMs} ms after the heal (${back.refusals.length} refusals: ${some(back.refusals, 3)}); ` +
          `the PUBLISHes sent after the cut reached the watcher: 3.1.1 ${watcher.delivered.get(cutPayload(4)) ?? 0}, 5 ${watcher.delivered.get(cutPayload(5)) ?? 0} time(s)`,
      )
      assert.deepEqual(lost, [], `messages acknowledged by n2 for the session held on n1, lost (${lost.length} of ${flood.acked.length})\n${cluster.logs()}`)
      assert.deepEqual(
        lateWills.map((x) => `${x.payload}${x.dup ? ' (dup)' : ''}`),
        [],
        `wills of n1's clients published again after the heal (counts: ${some(willCounts())})\n${cluster.logs()}`,
      )
    })
  }
})
