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
