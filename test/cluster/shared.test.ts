// Cluster: shared subscriptions span nodes. Members of `$share/g/...` on n1 and n2 split what a
// publisher on n3 sends: each message to exactly one member, every member a fair part. A member
// that leaves holding unacknowledged messages: those go to another member.
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
  until,
  WAIT_MS,
  waitDelivered,
} from './harness.js'

/** Messages of the distribution test. */
const COUNT = 2000
/** Messages of the test where a member leaves. */
const LEAVE_COUNT = 300
/** At most this many markers to reach every member. */
const MAX_MARKERS = 200

describe('cluster: shared subscriptions', { skip: skipCluster() }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await Cluster.start(['n1', 'n2', 'n3'])
  })
  after(() => cluster?.dispose())

  test(`$share/g/share/t/# with 2 members on n1 and 2 on n2: ${COUNT} QoS 1 messages from n3 each reach exactly one member, each member 10-40%`, { timeout: 120_000 }, async (t) => {
    const tag = 'sh'
    const members: Array<{ name: string; sub: AckingSubscriber }> = []
    for (const [node, k] of [['n1', 1], ['n1', 2], ['n2', 1], ['n2', 2]] as const) {
      const name = `${node}-${k}`
      let sub!: AckingSubscriber
      const { peer } = await cluster.connect(node, { clientId: `share-${name}`, version: k === 1 ? 5 : 4 }, (p) => (sub = new AckingSubscriber(p)))
      await subscribe(peer, 1, [{ topicFilter: '$share/g/share/t/#', qos: 1 }])
      members.push({ name, sub })
    }
    const subs = members.map((m) => m.sub)
    const { peer: pub } = await cluster.connect('n3', { clientId: 'share-pub', version: 5 })
    const flood = new Flood(pub, { topic: 'share/t/x', qos: 1, tag, total: COUNT }).start()
    await flood.finished()
    assert.deepEqual(flood.refused, [], 'PUBACK failure codes')
    await waitDelivered(flood.payloads(), subs, WAIT_MS, `every shared message at some member`, cluster)

    // The fence: markers behind the flood, one at a time, until each member has had one.
    let markers = 0
    while (!members.every((m) => [...m.sub.delivered.keys()].some((p) => p.startsWith(`${tag}:marker:`)))) {
      assert.ok(markers < MAX_MARKERS, `${MAX_MARKERS} markers did not reach every member: ${members.map((m) => `${m.name} ${m.sub.delivered.size}`).join(', ')}`)
      const marker = `${tag}:marker:${markers++}`
      await publishAndAck(pub, 'share/t/x', marker, 1)
      await until(() => subs.some((s) => s.delivered.has(marker)), WAIT_MS, () => `marker ${marker} at some member`)
    }

    const counts = members.map((m) => [...m.sub.delivered.keys()].filter((p) => indexIn(tag, p) !== undefined).length)
    const dups = duplicates(subs, (p) => indexIn(tag, p) !== undefined)
    t.diagnostic(`shares: ${members.map((m, k) => `${m.name} ${counts[k]}`).join(', ')}; ${markers} markers`)
    assert.deepEqual(dups, [], `messages delivered more than once (to one or several members)`)
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      COUNT,
      'deliveries in all',
    )
    for (const [k, m] of members.entries()) {
      const n = counts[k] as number
      assert.ok(n >= COUNT * 0.1 && n <= COUNT * 0.4, `member ${m.name} got ${n} of ${COUNT}, outside 10-40%`)
    }
  })

  test('a member that leaves holding unacknowledged messages: they go to another member', { timeout: 120_000 }, async (t) => {
    const tag = 'shl'
    const filter = '$share/h/share/u/#'
    // The member that leaves: never acknowledges, at most 10 messages unacknowledged.
    const held: string[] = []
    const { peer: leaver } = await cluster.connect('n1', { clientId: 'share-leaver', version: 5, properties: { receiveMaximum: 10 } }, (p) =>
      p.on((packet: Packet) => {
        if (packet.type === 'publish') held.push(packet.payload.toString())
      }),
    )
    await subscribe(leaver, 1, [{ topicFilter: filter, qos: 1 }])
    const stayers: AckingSubscriber[] = []
    for (const node of ['n1', 'n2']) {
      let sub!: AckingSubscriber
      const { peer } = await cluster.connect(node, { clientId: `share-stayer-${node}`, version: 5 }, (p) => (sub = new AckingSubscriber(p)))
      await subscribe(peer, 1, [{ topicFilter: filter, qos: 1 }])
      stayers.push(sub)
    }

    const { peer: pub } = await cluster.connect('n3', { clientId: 'share-leave-pub', version: 5 })
    const flood = new Flood(pub, { topic: 'share/u/x', qos: 1, tag, total: LEAVE_COUNT }).start()
    await flood.finished()
    assert.deepEqual(flood.refused, [], 'PUBACK failure codes')
    await leaver.until(
      () => held.length > 0,
      () => `the leaving member to receive some of the ${LEAVE_COUNT} messages (the others got ${stayers.map((s) => s.delivered.size).join(' and ')})\n${cluster.logs()}`,
    )
    await leaver.ping()
    const heldAtLeave = [...held]
    // Leaves: DISCONNECT, its session (expiry 0) ends with it.
    await leaver.disconnect()

    await waitDelivered(heldAtLeave, stayers, WAIT_MS, `the ${heldAtLeave.length} messages the leaving member held, at another member`, cluster)
    await waitDelivered(flood.payloads(), stayers, WAIT_MS, `every message at a member that stayed`, cluster)
    t.diagnostic(`the leaving member held ${heldAtLeave.length} unacknowledged; ${stayers.map((s) => s.delivered.size).join(' and ')} delivered to the others`)
    assert.deepEqual(missingFrom(heldAtLeave, stayers), [], 'held messages never redelivered')
    assert.ok(heldAtLeave.every((p) => indexIn(tag, p) !== undefined), `the leaver received only flood messages: ${some(heldAtLeave)}`)
  })
})
