// Cluster: wills. The wills of the clients of a node killed with SIGKILL are published by the
// survivors, each exactly once (two survivors may both notice the death); those of clients that
// disconnected normally before, never. A delayed will (MQTT 5 Will Delay Interval) whose client
// reconnects to another node within the delay is never published; one whose client does not come
// back is, after its delay.
//
// The two tests run at once, each on its own cluster: the second must watch for 30 s.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  AckingSubscriber,
  Cluster,
  LEASE_MS,
  observeQuiet,
  type Peer,
  skipCluster,
  some,
  subscribe,
  TAKEOVER_MS,
  until,
  WAIT_MS,
} from './harness.js'

/** Clients with a will on the node that is killed. */
const WILLS = 50
/** Clients with a will that disconnect normally before the kill. */
const GONE = 5
/** The Will Delay Interval, seconds, of the client that comes back. */
const WILL_DELAY_S = 30

describe('cluster: wills', { skip: skipCluster(), concurrency: true }, () => {
  test(`the wills of ${WILLS} clients of a node killed with SIGKILL are each published once by the survivors`, { timeout: 120_000 }, async (t) => {
    const cluster = await Cluster.start(['n1', 'n2', 'n3'])
    t.after(() => cluster.dispose())

    let watcher!: AckingSubscriber
    const { peer: watcherPeer } = await cluster.connect('n2', { clientId: 'will-watcher', version: 5 }, (p) => (watcher = new AckingSubscriber(p)))
    await subscribe(watcherPeer, 1, [{ topicFilter: 'will/#', qos: 1 }])

    const willOf = (i: number): string => `will:${i}`
    const clients: Peer[] = []
    for (let i = 0; i < WILLS; i++) {
      const version = i % 2 === 0 ? 4 : 5
      const { peer } = await cluster.connect('n1', {
        clientId: `will-${i}`,
        version,
        will: { topic: `will/c/${i}`, payload: Buffer.from(willOf(i)), qos: 1, retain: false },
      })
      clients.push(peer)
    }
    for (let i = 0; i < GONE; i++) {
      const { peer } = await cluster.connect('n1', {
        clientId: `will-gone-${i}`,
        version: 5,
        will: { topic: `will/gone/${i}`, payload: Buffer.from(`gone:${i}`), qos: 1, retain: false },
      })
      await peer.disconnect()
    }
    // Routes from n1 to the watcher are in place, and no will has been published yet.
    await cluster.roundTrip('n1', 'will/fence/before', 'fence:before', watcher)
    assert.deepEqual([...watcher.delivered.keys()], ['fence:before'], 'nothing but the fence before the kill')

    const t0 = performance.now()
    await cluster.kill('n1')
    for (const peer of clients) await peer.waitClosed('a will client to lose its connection with n1')
    const expected = Array.from({ length: WILLS }, (_, i) => willOf(i))
    await until(
      () => expected.every((w) => watcher.delivered.has(w)) || watcherPeer.closed,
      TAKEOVER_MS,
      () => `every will on n2 after n1's death (missing: ${some(expected.filter((w) => !watcher.delivered.has(w)))})\n${cluster.logs()}`,
    )
    const allIn = Math.round(performance.now() - t0)

    // Through both survivors, then one more lease in which nothing more may come, then again.
    await cluster.roundTrip('n2', 'will/fence/n2', 'fence:n2', watcher)
    await cluster.roundTrip('n3', 'will/fence/n3', 'fence:n3', watcher)
    await observeQuiet(LEASE_MS)
    await cluster.roundTrip('n2', 'will/fence/n2', 'fence:n2:last', watcher)
    await cluster.roundTrip('n3', 'will/fence/n3', 'fence:n3:last', watcher)

    const wills = watcher.log.filter((x) => x.payload.startsWith('will:'))
    const counts = expected.map((w) => `${w}x${watcher.delivered.get(w) ?? 0}`).filter((c) => !c.endsWith('x1'))
    const gone = watcher.log.filter((x) => x.payload.startsWith('gone:')).map((x) => x.payload)
    t.diagnostic(`${wills.length} will deliveries, all ${WILLS} wills in within ${allIn} ms of the kill (lease ${LEASE_MS} ms)`)
    assert.deepEqual(counts, [], `wills not published exactly once\n${cluster.logs()}`)
    assert.deepEqual(gone, [], 'wills of clients that had disconnected normally')
    assert.ok(
      wills.every((x) => x.qos === 1),
      'wills delivered at QoS 1',
    )
  })

  test(`a will delayed ${WILL_DELAY_S} s is never published when its client reconnects to another node within the delay`, { timeout: 120_000 }, async (t) => {
    const cluster = await Cluster.start(['n1', 'n2'])
    t.after(() => cluster.dispose())

    let watcher!: AckingSubscriber
    const { peer: watcherPeer } = await cluster.connect('n2', { clientId: 'wdelay-watcher', version: 5 }, (p) => (watcher = new AckingSubscriber(p)))
    await subscribe(watcherPeer, 1, [{ topicFilter: 'wdelay/#', qos: 1 }])

    const willMessage = (topic: string, payload: string, delay: number) => ({
      topic,
      payload: Buffer.from(payload),
      qos: 1 as const,
      retain: false,
      properties: { willDelayInterval: delay },
    })
    // The one that comes back, and a control that does not (its will, delayed 1 s, must come).
    const back = await cluster.mqtt('n1', {
      clientId: 'wdelay-back',
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 300 },
      will: willMessage('wdelay/back', 'wdelay:back', WILL_DELAY_S),
    })
    const control = await cluster.mqtt('n1', {
      clientId: 'wdelay-control',
      protocolVersion: 5,
      clean: false,
      properties: { sessionExpiryInterval: 300 },
      will: willMessage('wdelay/control', 'wdelay:control', 1),
    })
    await back.client.subscribeAsync('wdelay-back/own', { qos: 1 })

    // The connections drop, without DISCONNECT.
    const t0 = performance.now()
    back.client.stream.destroy()
    control.client.stream.destroy()
    const again = await cluster.mqtt('n2', { clientId: 'wdelay-back', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 300 } })
    const reconnectedIn = performance.now() - t0
    assert.equal(again.connack.sessionPresent, true, 'CONNACK session present on n2')
    assert.ok(reconnectedIn < WILL_DELAY_S * 1000, `reconnected within the will delay (${Math.round(reconnectedIn)} ms)`)

    await watcher.waitFor('wdelay:control', WAIT_MS)
    const controlAfter = performance.now() - t0
    assert.ok(controlAfter >= 1000, `the control's will waited its 1 s delay (came after ${Math.round(controlAfter)} ms)`)

    // The will that must not come would come at 30 s: watch until then, and one lease more.
    const left = WILL_DELAY_S * 1000 + LEASE_MS - (performance.now() - t0)
    await observeQuiet(Math.max(0, left))
    await cluster.roundTrip('n1', 'wdelay/fence', 'wdelay:fence:n1', watcher)
    await cluster.roundTrip('n2', 'wdelay/fence', 'wdelay:fence:n2', watcher)
    t.diagnostic(`reconnected on n2 after ${Math.round(reconnectedIn)} ms; control will after ${Math.round(controlAfter)} ms`)
    assert.equal(
      watcher.log.filter((x) => x.payload === 'wdelay:back').length,
      0,
      `the will of the client that came back within its delay was published\n${cluster.logs()}`,
    )
    assert.equal(watcher.delivered.get('wdelay:control'), 1, 'the control will, once')
    assert.equal(again.client.connected, true, 'the reconnected client stays connected on n2')
  })
})
