// Cluster: messages cross nodes. A subscriber on n1 gets what a publisher on n2 sends, at QoS 0,
// 1 and 2; a subscription is in force on every node as soon as its SUBACK is sent; a retained
// message set or cleared on one node is what a new subscriber on another node gets.
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
  orderViolations,
  ping,
  publishAndAck,
  skipCluster,
  some,
  subscribe,
  WAIT_MS,
  waitDelivered,
} from './harness.js'

/** Messages per QoS level. */
const COUNT = 2000
/** QoS 0 messages sent one at a time, each awaited, before the QoS 0 flood. */
const PACED = 20
/** Trials of the route-propagation race. */
const TRIALS = 100

describe('cluster: cross-node delivery', { skip: skipCluster() }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await Cluster.start(['n1', 'n2'])
  })
  after(() => cluster?.dispose())

  for (const qos of [1, 2] as const) {
    test(`QoS ${qos}: ${COUNT} messages published on n2 reach a subscriber on n1, all, in order${qos === 2 ? ', exactly once' : ''}`, { timeout: 120_000 }, async (t) => {
      const tag = `q${qos}`
      const topic = `cross/q${qos}`
      let sub!: AckingSubscriber
      const { peer } = await cluster.connect('n1', { clientId: `cross-sub-${qos}`, version: 5 }, (p) => (sub = new AckingSubscriber(p)))
      await subscribe(peer, 1, [{ topicFilter: topic, qos: 2 }])
      const { peer: pub } = await cluster.connect('n2', { clientId: `cross-pub-${qos}`, version: 4 })
      const flood = new Flood(pub, { topic, qos, tag, total: COUNT }).start()
      await flood.finished()
      assert.deepEqual(flood.refused, [], 'acknowledgements with a failure code')
      assert.equal(flood.acked.length, COUNT)

      // The last message of the flood comes after all the others (one publisher, one topic); a
      // marker sent after every acknowledgement then fences any late duplicate.
      await waitDelivered([Flood.payload(tag, COUNT - 1)], [sub], WAIT_MS, `the last message of the QoS ${qos} flood on n1`, cluster)
      await publishAndAck(pub, topic, `${tag}:end`, qos)
      await sub.waitFor(`${tag}:end`)

      const arrivals = sub.log.map((x) => x.payload)
      const missing = missingFrom(flood.payloads(), [sub])
      const dups = duplicates([sub], (p) => indexIn(tag, p) !== undefined)
      const wrongQos = sub.log.filter((x) => x.qos !== qos).map((x) => `${x.payload}@${x.qos}`)
      t.diagnostic(`QoS ${qos}: ${sub.delivered.size - 1} distinct delivered of ${COUNT}, ${dups.length} duplicated`)
      assert.deepEqual(missing, [], `messages lost between n2 and n1 (${missing.length}: ${some(missing)})\n${cluster.logs()}`)
      assert.deepEqual(orderViolations(arrivals, tag), [], 'messages delivered out of publish order')
      assert.deepEqual(wrongQos, [], `messages delivered at another QoS than ${qos}`)
      if (qos === 2) assert.deepEqual(dups, [], 'QoS 2 messages delivered more than once')
    })
  }

  test(`QoS 0: paced messages from n2 all reach n1; a flood of ${COUNT} arrives in order, without duplicates`, { timeout: 120_000 }, async (t) => {
    const tag = 'q0'
    const topic = 'cross/q0'
    let sub!: AckingSubscriber
    const { peer } = await cluster.connect('n1', { clientId: 'cross-sub-0', version: 4 }, (p) => (sub = new AckingSubscriber(p)))
    await subscribe(peer, 1, [{ topicFilter: topic, qos: 2 }])
    const { peer: pub } = await cluster.connect('n2', { clientId: 'cross-pub-0', version: 4 })

    // Without load nothing is dropped: each message is awaited before the next is sent.
    for (let i = 0; i < PACED; i++) {
      pub.publish(topic, `${tag}:paced:${i}`, 0, 0)
      await sub.waitFor(`${tag}:paced:${i}`)
    }

    pub.socket.cork()
    for (let i = 0; i < COUNT; i++) pub.publish(topic, Flood.payload(tag, i), 0, 0)
    pub.socket.uncork()
    // A QoS 1 marker behind the flood, from the same client to the same topic.
    await publishAndAck(pub, topic, `${tag}:end`, 1)
    await sub.waitFor(`${tag}:end`)
    await peer.ping()

    const flood = sub.log.filter((x) => indexIn(tag, x.payload) !== undefined)
    const indices = flood.map((x) => indexIn(tag, x.payload) as number)
    const backwards = indices.filter((n, k) => k > 0 && n <= (indices[k - 1] as number)).length
    t.diagnostic(`QoS 0 flood: ${indices.length} of ${COUNT} delivered`)
    assert.equal(backwards, 0, `QoS 0 messages out of order or duplicated: ${some(indices.map(String), 50)}`)
    assert.ok(
      flood.every((x) => x.qos === 0),
      'QoS 0 messages delivered at QoS 0',
    )
  })

  test('an MQTT 5 publisher on n2 gets PUBACK 0x00, not 0x10 (no matching subscribers), when the subscriber is on n1', { timeout: 60_000 }, async () => {
    let sub!: AckingSubscriber
    const { peer } = await cluster.connect('n1', { clientId: 'code-sub', version: 5 }, (p) => (sub = new AckingSubscriber(p)))
    await subscribe(peer, 1, [{ topicFilter: 'code/t', qos: 1 }])
    // The route is known on n2 once a message has crossed.
    await cluster.roundTrip('n2', 'code/t', 'code:first', sub)
    const { peer: pub } = await cluster.connect('n2', { clientId: 'code-pub', version: 5 })
    const codes: number[] = []
    pub.on((p: Packet) => {
      if (p.type === 'puback') codes.push(p.reasonCode ?? 0)
    })
    for (let i = 1; i <= 10; i++) pub.publish('code/t', `code:${i}`, 1, i)
    await pub.until(() => codes.length === 10, 'the 10 PUBACKs')
    await sub.waitFor('code:10')
    assert.deepEqual(
      codes.map((c) => `0x${c.toString(16).padStart(2, '0')}`),
      Array.from({ length: 10 }, () => '0x00'),
      'PUBACK reason codes for messages that a subscriber on n1 received',
    )
  })

  test(`no route-propagation window: ${TRIALS} trials of a QoS 1 publish on n2 sent the moment a subscriber's SUBACK arrives on n1`, { timeout: 120_000 }, async (t) => {
    const deadline = performance.now() + 90_000
    let sub!: AckingSubscriber
    const { peer: subPeer } = await cluster.connect('n1', { clientId: 'route-sub', version: 5 }, (p) => (sub = new AckingSubscriber(p)))
    const { peer: pub } = await cluster.connect('n2', { clientId: 'route-pub', version: 5 })
    const acks = new Map<number, number>()
    pub.on((p: Packet) => {
      if (p.type === 'puback') acks.set(p.packetId, p.reasonCode ?? 0)
    })
    /** SUBACK packet id -> the publish to send when it arrives. */
    const onSuback = new Map<number, () => void>()
    subPeer.on((p: Packet) => {
      if (p.type !== 'suback') return
      onSuback.get(p.packetId)?.()
      onSuback.delete(p.packetId)
    })
    const lost: string[] = []
    for (let i = 1; i <= TRIALS; i++) {
      assert.ok(performance.now() < deadline, `only ${i - 1} of ${TRIALS} trials within 90 s`)
      const topic = `route/${i}`
      const message = `route:${i}`
      const marker = `route:${i}:marker`
      // In the callback of the SUBACK's 'data' event: no turn of the event loop in between.
      onSuback.set(i, () => pub.publish(topic, message, 1, i))
      subPeer.send({ type: 'subscribe', packetId: i, subscriptions: [{ topicFilter: topic, qos: 1 }] })
      await pub.until(() => acks.has(i), `PUBACK of ${message}`)
      const code = acks.get(i) ?? 0
      assert.ok(code < 0x80, `PUBACK of ${message} refused: 0x${code.toString(16)}`)
      // Behind it through the same path: once the marker is in, the message had its chance.
      await publishAndAck(pub, topic, marker, 1)
      await subPeer.until(
        () => sub.delivered.has(marker) || sub.delivered.has(message),
        () => `${message} or its marker on n1 (trial ${i})\n${cluster.logs()}`,
      )
      await sub.waitFor(marker)
      // PUBACK 0x10: n2 knew of no subscriber when the message came.
      if (!sub.delivered.has(message)) lost.push(`${message} (PUBACK 0x${code.toString(16).padStart(2, '0')})`)
    }
    t.diagnostic(`${TRIALS} trials, ${lost.length} lost`)
    assert.deepEqual(lost, [], `messages published on n2 at the SUBACK on n1 that never arrived, the marker published after each did (${lost.length} of ${TRIALS})\n${cluster.logs()}`)
  })

  test('retained: set on n1, a new subscriber on n2 gets it; cleared on n2, a new subscriber on n1 gets nothing', { timeout: 60_000 }, async () => {
    const setter = await cluster.mqtt('n1', { clientId: 'ret-set', protocolVersion: 5 })
    await setter.client.publishAsync('ret/a', 'A', { qos: 1, retain: true })

    const first = await cluster.mqtt('n2', { clientId: 'ret-sub-1', protocolVersion: 5 })
    await first.client.subscribeAsync('ret/a', { qos: 1 })
    const got = await first.inbox.waitForTopic('ret/a', WAIT_MS)
    await ping(first.client)
    assert.deepEqual(
      first.inbox.messages.map((m) => ({ topic: m.topic, payload: m.payload, qos: m.qos, retain: m.retain })),
      [{ topic: 'ret/a', payload: 'A', qos: 1, retain: true }],
      `the retained message set on n1, as seen by a new subscriber on n2 (got ${JSON.stringify(got)})`,
    )

    const clearer = await cluster.mqtt('n2', { clientId: 'ret-clear', protocolVersion: 5 })
    await clearer.client.publishAsync('ret/a', '', { qos: 1, retain: true })
    // The fence: a retained message on another topic, set after the clear by the same client.
    await clearer.client.publishAsync('ret/b', 'B', { qos: 1, retain: true })

    const second = await cluster.mqtt('n1', { clientId: 'ret-sub-2', protocolVersion: 5 })
    await second.client.subscribeAsync({ 'ret/a': { qos: 1 }, 'ret/b': { qos: 1 } })
    await second.inbox.waitForTopic('ret/b', WAIT_MS)
    await ping(second.client)
    assert.deepEqual(
      second.inbox.messages.map((m) => `${m.topic}:${m.payload}:${m.retain ? 'retained' : 'live'}`),
      ['ret/b:B:retained'],
      'after the clear on n2, a new subscriber on n1 gets only the fence message',
    )
  })
})
