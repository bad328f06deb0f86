// Cluster: no route-propagation window even when a node hears of new routes late. n2 talks to
// Redis through a link that delays every chunk by 40 ms, so its view of the routes lags n1's by
// at least that; a client publishing on n2 the moment its subscriber's SUBACK arrives from n1
// still reaches it, because n1 sends the SUBACK only once n2 has applied the new route and
// committed what it had routed before. (On a fast loopback link the lag is too short for the
// plain trials of delivery.test.ts to catch a broker that does not wait.)
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Packet } from '../../src/protocol/packets.js'
import { AckingSubscriber, Cluster, publishAndAck, skipCluster, TcpProxy } from './harness.js'

const TRIALS = 15
const DELAY_MS = 40

describe('cluster: a node with a slow link to Redis', { skip: skipCluster() }, () => {
  let cluster: Cluster
  let proxy: TcpProxy
  before(async () => {
    cluster = await Cluster.start(['n1'])
    proxy = await TcpProxy.start(cluster.redis.port, { delayMs: DELAY_MS })
    await cluster.startNode('n2', [], proxy.url)
  })
  after(async () => {
    await cluster?.dispose()
    await proxy?.close()
  })

  test('new filters subscribed on n1 and n2 at the same moment: every SUBACK comes without either node waiting out the others', { timeout: 120_000 }, async (t) => {
    const { peer: a } = await cluster.connect('n1', { clientId: 'both-a', version: 5 })
    const { peer: b } = await cluster.connect('n2', { clientId: 'both-b', version: 5 })
    const subacks = new Set<string>()
    a.on((p: Packet) => p.type === 'suback' && subacks.add(`a${p.packetId}`))
    b.on((p: Packet) => p.type === 'suback' && subacks.add(`b${p.packetId}`))
    for (let i = 1; i <= 10; i++) {
      // Each node gets a route it had no subscriber for, in the same instant.
      a.send({ type: 'subscribe', packetId: i, subscriptions: [{ topicFilter: `both/a/${i}`, qos: 1 }] })
      b.send({ type: 'subscribe', packetId: i, subscriptions: [{ topicFilter: `both/b/${i}`, qos: 1 }] })
      await a.until(() => subacks.has(`a${i}`), `SUBACK ${i} on n1`)
      await b.until(() => subacks.has(`b${i}`), `SUBACK ${i} on n2`)
    }
    // A node that gives up waiting for the others says so (after two leases): none may have.
    const gaveUp = cluster.logs().match(/did not confirm route version/g) ?? []
    t.diagnostic(`10 rounds, ${gaveUp.length} waits given up`)
    assert.deepEqual(gaveUp, [], `a node acknowledged without the others having seen its routes\n${cluster.logs()}`)
  })

  for (const qos of [0, 1] as const) {
    test(`QoS ${qos}: ${TRIALS} publishes on n2 sent the moment a SUBACK arrives from n1 all arrive`, { timeout: 120_000 }, async (t) => {
      let sub!: AckingSubscriber
      const { peer: subPeer } = await cluster.connect('n1', { clientId: `slow-sub-${qos}`, version: 5 }, (p) => (sub = new AckingSubscriber(p)))
      const { peer: pub } = await cluster.connect('n2', { clientId: `slow-pub-${qos}`, version: 5 })
      const onSuback = new Map<number, () => void>()
      subPeer.on((p: Packet) => {
        if (p.type !== 'suback') return
        onSuback.get(p.packetId)?.()
        onSuback.delete(p.packetId)
      })
      const lost: string[] = []
      for (let i = 1; i <= TRIALS; i++) {
        const topic = `slow/${qos}/${i}`
        const message = `slow:${qos}:${i}`
        const marker = `${message}:marker`
        // In the SUBACK's own 'data' callback: no turn of the event loop in between.
        onSuback.set(i, () => pub.publish(topic, message, qos, qos === 0 ? 0 : 1000 + i))
        subPeer.send({ type: 'subscribe', packetId: i, subscriptions: [{ topicFilter: topic, qos: 1 }] })
        // Same publisher, same topic, after it: once the marker is in, the message had its chance.
        await subPeer.until(() => !onSuback.has(i), `SUBACK ${i}`)
        await publishAndAck(pub, topic, marker, 1)
        await sub.waitFor(marker)
        if (!sub.delivered.has(message)) lost.push(message)
      }
      t.diagnostic(`${TRIALS} trials, ${lost.length} lost`)
      assert.deepEqual(lost, [], `messages published on n2 at the SUBACK on n1 that never arrived (${lost.length} of ${TRIALS})\n${cluster.logs()}`)
    })
  }
})
