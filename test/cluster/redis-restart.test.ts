// Cluster: Redis itself dies (SIGKILL; it runs with appendfsync always) in the middle of a QoS 1
// flood from a publisher on n2 to persistent subscribers on n1 (across nodes) and n2 (local), and
// is restarted on the same data. Every message a node PUBACKed is delivered once the nodes are
// back (to the subscribers' first connections or, after they reconnect, to their sessions;
// duplicates allowed at QoS 1), and the nodes serve new traffic, across nodes both ways.
//
// Three runs on one cluster: Redis comes back at once (within the lease), after the nodes gave up
// their clients, and after every lease ran out (the nodes rejoin). Where the kill comes (which PUBACK) and the publisher's protocol version
// are drawn from the seed (test/crash/harness.ts).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { rngFor } from '../crash/harness.js'
import {
  AckingSubscriber,
  Cluster,
  duplicates,
  Flood,
  indexIn,
  LEASE_MS,
  missingFrom,
  observeQuiet,
  type Peer,
  publishAndAck,
  skipCluster,
  some,
  subscribe,
  TAKEOVER_MS,
  until,
  WAIT_MS,
} from './harness.js'

/** Messages of the flood (Redis dies somewhere in it). */
const FLOOD = 2000

describe('cluster: Redis killed and restarted', { skip: skipCluster() }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await Cluster.start(['n1', 'n2'])
  })
  after(() => cluster?.dispose())

  for (const [k, when] of [
    ['a', 'at once'],
    ['b', 'after the nodes dropped their clients'],
    ['c', 'after the leases ran out'],
  ] as const) {
    test(`Redis SIGKILLed mid-flood and restarted ${when}: every PUBACKed message reaches the persistent subscribers on n1 and n2; the nodes serve again`, { timeout: 90_000 }, async (t) => {
      const rng = rngFor(t)
      const killAt = rng.int(100, 1200)
      // A store failure is PUBACK 0x80 (not accepted) for an MQTT 5 publisher, a closed connection for a 3.1.1 one.
      const pubVersion: 4 | 5 = rng.bool() ? 4 : 5
      const topic = `rr/${k}/flood`
      const tag = `rr${k}`

      // Persistent subscribers: on n1 (the flood crosses nodes) and on n2 (the publisher's node).
      const subscribers = [
        { node: 'n1', options: { clientId: `rr-${k}-sub-n1`, version: 5 as const, clean: false, sessionExpiry: 3600 } },
        { node: 'n2', options: { clientId: `rr-${k}-sub-n2`, version: 4 as const, clean: false } },
      ].map((s) => ({ ...s, connections: [] as Array<{ peer: Peer; sub: AckingSubscriber }> }))
      for (const s of subscribers) {
        let sub!: AckingSubscriber
        // Retrying: a node may still be coming back from an earlier outage.
        const { peer } = await cluster.connectRetrying(s.node, s.options, (p) => (sub = new AckingSubscriber(p)), TAKEOVER_MS)
        await subscribe(peer, 1, [{ topicFilter: topic, qos: 1 }])
        s.connections.push({ peer, sub })
      }
      // The routes are in place on both nodes before the flood.
      const [first] = subscribers[0]?.connections ?? []
      await cluster.roundTrip('n2', topic, `${tag}:fence`, (first as { sub: AckingSubscriber }).sub)

      const { peer: pub } = await cluster.connect('n2', { clientId: `rr-${k}-pub`, version: pubVersion })
      let killedAt: number | undefined
      let killed: Promise<void> | undefined
      const flood = new Flood(pub, {
        topic,
        qos: 1,
        tag,
        total: FLOOD,
        onAck: (n) => {
          if (n !== killAt) return
          killedAt = performance.now()
          // RedisServer.kill sends the SIGKILL synchronously, here, at this very PUBACK.
          killed = cluster.redis.kill()
        },
      }).start()
      await until(() => killedAt !== undefined || flood.done, WAIT_MS, () => `the kill at PUBACK ${killAt} (${flood.acked.length} so far)`)
      assert.ok(killedAt !== undefined, `the flood ended before PUBACK ${killAt}`)
      await killed
      const ackedAtKill = flood.acked.length

      if (when !== 'at once') {
        // The nodes cannot renew their leases: they drop their clients (about a lease), then Redis comes back.
        await until(
          () => pub.closed && subscribers.every((s) => s.connections.every((c) => c.peer.closed)),
          3 * LEASE_MS + WAIT_MS,
          () => `the nodes to drop their clients without Redis\n${cluster.logs()}`,
        )
      }
      if (when === 'after the leases ran out') {
        // Not a synchronisation: the outage is made to outlast every lease (each was renewed last
        // before its node dropped its clients), so that the nodes come back to expired leases.
        await observeQuiet(LEASE_MS + 200)
      }
      await cluster.redis.restart()
      const downMs = Math.round(performance.now() - killedAt)

      // The flood goes on if the publisher's connection lived through it; its acknowledgements are what is owed.
      await until(() => flood.done || pub.closed, TAKEOVER_MS * 2, () => `the flood to end or its connection to close (${flood.acked.length} PUBACKed)\n${cluster.logs()}`)
      assert.deepEqual(
        flood.refused.filter((r) => !r.endsWith('=0x80')),
        [],
        'PUBACK failure codes other than 0x80 (the store failed: not accepted)',
      )
      const ackedAfterRestart = flood.acked.length - ackedAtKill

      // Subscribers whose connection the outage closed reconnect to their node and resume their session.
      const reconnects: string[] = []
      const reconnect = async (s: (typeof subscribers)[number]): Promise<void> => {
        let sub!: AckingSubscriber
        const again = await cluster.connectRetrying(s.node, s.options, (p) => (sub = new AckingSubscriber(p)), TAKEOVER_MS)
        assert.equal(again.connack.sessionPresent, true, `CONNACK session present for ${s.options.clientId} on ${s.node} after Redis came back\n${cluster.logs()}`)
        s.connections.push({ peer: again.peer, sub })
        reconnects.push(`${s.options.clientId} after ${again.refusals.length} refusals (${some(again.refusals, 3)})`)
      }
      for (const s of subscribers) if (s.connections.at(-1)?.peer.closed ?? true) await reconnect(s)

      // A marker behind the flood, on n2 (a new publisher if the old one was dropped): once it is in, so is everything before it.
      const marker = pub.closed ? (await cluster.connectRetrying('n2', { clientId: `rr-${k}-pub-2`, version: 5 }, () => {}, TAKEOVER_MS)).peer : pub
      await publishAndAck(marker, topic, `${tag}:end`, 1)
      for (const s of subscribers) {
        // A connection that lived through the restart may still be dropped by a node that lapsed just after it: then again.
        for (let attempt = 1; ; attempt++) {
          const { peer, sub } = s.connections.at(-1) as { peer: Peer; sub: AckingSubscriber }
          await peer.until(() => sub.delivered.has(`${tag}:end`) || peer.closed, () => `the marker at ${s.options.clientId}\n${cluster.logs()}`, TAKEOVER_MS)
          if (sub.delivered.has(`${tag}:end`)) break
          assert.ok(attempt < 3, `${s.options.clientId} dropped ${attempt} times after Redis came back\n${cluster.logs()}`)
          await reconnect(s)
        }
      }

      const report = subscribers.map((s) => {
        const subs = s.connections.map((c) => c.sub)
        return { id: s.options.clientId, missing: missingFrom(flood.acked, subs), dups: duplicates(subs, (p) => indexIn(tag, p) !== undefined).length, perConnection: subs.map((x) => x.delivered.size).join('+') }
      })
      t.diagnostic(
        `MQTT ${pubVersion} publisher; Redis killed at PUBACK ${killAt}, restarted ${when} (${downMs} ms down); ` +
          `${flood.acked.length} PUBACKed of ${flood.sent} sent (${ackedAfterRestart} after the kill), ${flood.refused.length} refused with 0x80; reconnected: ${reconnects.join('; ') || 'none'}; ` +
          report.map((r) => `${r.id}: ${r.perConnection} delivered, ${r.dups} duplicated`).join('; '),
      )
      for (const r of report) assert.deepEqual(r.missing, [], `PUBACKed messages lost for ${r.id} (${r.missing.length} of ${flood.acked.length}: ${some(r.missing)})\n${cluster.logs()}`)

      // New traffic, across nodes both ways and within a node.
      const fresh = new Map<string, AckingSubscriber>()
      for (const node of ['n1', 'n2']) {
        let sub!: AckingSubscriber
        const { peer } = await cluster.connectRetrying(node, { clientId: `rr-${k}-new-${node}`, version: 5 }, (p) => (sub = new AckingSubscriber(p)), TAKEOVER_MS)
        await subscribe(peer, 1, [{ topicFilter: `rr/${k}/new/${node}`, qos: 1 }])
        fresh.set(node, sub)
      }
      await cluster.roundTrip('n2', `rr/${k}/new/n1`, `${tag}:new:n2-to-n1`, fresh.get('n1') as AckingSubscriber)
      await cluster.roundTrip('n1', `rr/${k}/new/n2`, `${tag}:new:n1-to-n2`, fresh.get('n2') as AckingSubscriber)
      await cluster.roundTrip('n1', `rr/${k}/new/n1`, `${tag}:new:n1-to-n1`, fresh.get('n1') as AckingSubscriber)
    })
  }
})
