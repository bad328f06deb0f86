// Cluster: a node dies (SIGKILL) and nothing acknowledged is lost. The subscriber's node dies
// in the middle of a QoS 1 flood: its persistent session resumes on another node with every
// PUBACKed message. The publisher's node dies: every message it PUBACKed reaches the subscriber on
// a third node. A killed node restarted with its node id serves again.
//
// The tests share one cluster (n1, n2, n3) and run in order; each first restarts the nodes it
// needs, so each also runs alone.
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
  publishAndAck,
  skipCluster,
  some,
  subscribe,
  TAKEOVER_MS,
  waitDelivered,
} from './harness.js'

/** Messages of each flood (the kill comes somewhere in it). */
const FLOOD = 3000

describe('cluster: node death', { skip: skipCluster() }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await Cluster.start(['n1', 'n2', 'n3'])
  })
  after(() => cluster?.dispose())

  test("the subscriber's node killed mid-flood: the session resumes on n3 with every PUBACKed message", { timeout: 150_000 }, async (t) => {
    await Promise.all(['n1', 'n2', 'n3'].map((id) => cluster.ensure(id)))
    const rng = rngFor(t)
    const killAt = rng.int(200, 1500)
    const version: 4 | 5 = rng.bool() ? 4 : 5
    const options = { clientId: 'death-sub', version, clean: false, sessionExpiry: 3600 }
    const topic = 'death/sub-node'
    const tag = 'ds'
    let onN1!: AckingSubscriber
    const first = await cluster.connect('n1', options, (p) => (onN1 = new AckingSubscriber(p)))
    await subscribe(first.peer, 1, [{ topicFilter: topic, qos: 1 }])

    const { peer: pub } = await cluster.connect('n2', { clientId: 'death-sub-pub', version: 5 })
    const flood = new Flood(pub, {
      topic,
      qos: 1,
      tag,
      total: FLOOD,
      onAck: (n) => {
        if (n === killAt) cluster.killNow('n1')
      },
    }).start()
    await first.peer.waitClosed('the subscriber connection to close when n1 is killed')
    await cluster.kill('n1')
    // The publisher's node lives: the flood goes on into the session of the dead node's client.
    await flood.finished(TAKEOVER_MS * 2)
    assert.deepEqual(flood.refused, [], 'PUBACK failure codes')
    const deliveredBefore = onN1.delivered.size

    const t0 = performance.now()
    let afterSub!: AckingSubscriber
    const second = await cluster.connectRetrying('n3', options, (p) => (afterSub = new AckingSubscriber(p)), TAKEOVER_MS)
    const reconnectMs = Math.round(performance.now() - t0)
    assert.equal(second.connack.sessionPresent, true, `CONNACK session present on n3 for the session of the killed n1\n${cluster.logs()}`)
    // A marker behind the flood from the same publisher: once it is in, everything before it is.
    await publishAndAck(pub, topic, `${tag}:end`, 1)
    await afterSub.waitFor(`${tag}:end`)

    const subs = [onN1, afterSub]
    const missing = missingFrom(flood.acked, subs)
    t.diagnostic(
      `MQTT ${version}, n1 killed at PUBACK ${killAt}: ${flood.acked.length} PUBACKed; ${deliveredBefore} delivered on n1, ${afterSub.delivered.size - 1} on n3 ` +
        `(${duplicates(subs, (p) => indexIn(tag, p) !== undefined).length} duplicated); reconnected in ${reconnectMs} ms after ${second.refusals.length} refusals (${some(second.refusals, 5)})`,
    )
    assert.deepEqual(missing, [], `PUBACKed messages lost with n1 (${missing.length} of ${flood.acked.length}: ${some(missing)})\n${cluster.logs()}`)
  })

  test('a node killed with SIGKILL and restarted at once with its node id serves again: its sessions and wills, new clients, messages to and from it', { timeout: 120_000 }, async (t) => {
    await Promise.all(['n1', 'n2'].map((id) => cluster.ensure(id)))
    // On n1 when it dies: a persistent session, and a client with a will; a watcher on n2.
    let watcher!: AckingSubscriber
    const w = await cluster.connect('n2', { clientId: 'restart-watcher', version: 5 }, (p) => (watcher = new AckingSubscriber(p)))
    await subscribe(w.peer, 1, [{ topicFilter: 'restart/will/#', qos: 1 }])
    const persistent = { clientId: 'restart-persistent', version: 5 as const, clean: false, sessionExpiry: 3600 }
    const held = await cluster.connect('n1', persistent)
    await subscribe(held.peer, 1, [{ topicFilter: 'restart/persist', qos: 1 }])
    await cluster.connect('n1', { clientId: 'restart-will', version: 4, will: { topic: 'restart/will/w', payload: Buffer.from('restart:will'), qos: 1, retain: false } })

    await cluster.kill('n1')
    const t0 = performance.now()
    // Its lease still runs: the new process waits for it to expire (at most one lease), then serves.
    await cluster.startNode('n1')
    const restartMs = Math.round(performance.now() - t0)

    // The persistent session: messages published meanwhile on n2, then it resumes on n1.
    const { peer: pub } = await cluster.connect('n2', { clientId: 'restart-persist-pub', version: 4 })
    const flood = new Flood(pub, { topic: 'restart/persist', qos: 1, tag: 'rp', total: 20 }).start()
    await flood.finished()
    let resumed!: AckingSubscriber
    const back = await cluster.connect('n1', persistent, (p) => (resumed = new AckingSubscriber(p)))
    assert.equal(back.connack.sessionPresent, true, `the session held on n1 when it died, on the restarted n1\n${cluster.logs()}`)
    await publishAndAck(pub, 'restart/persist', 'rp:end', 1)
    await resumed.waitFor('rp:end')
    assert.deepEqual(missingFrom(flood.payloads(), [resumed]), [], 'messages queued for the session while n1 restarted')

    // New clients on the restarted node; messages cross to and from it.
    let subN1!: AckingSubscriber
    const a = await cluster.connect('n1', { clientId: 'restart-sub-n1', version: 5 }, (p) => (subN1 = new AckingSubscriber(p)))
    await subscribe(a.peer, 1, [{ topicFilter: 'restart/to-n1', qos: 1 }])
    let onN2!: AckingSubscriber
    const b = await cluster.connect('n2', { clientId: 'restart-sub-n2', version: 4 }, (p) => (onN2 = new AckingSubscriber(p)))
    await subscribe(b.peer, 1, [{ topicFilter: 'restart/to-n2', qos: 1 }])
    await cluster.roundTrip('n2', 'restart/to-n1', 'restart:n2-to-n1', subN1)
    await cluster.roundTrip('n1', 'restart/to-n2', 'restart:n1-to-n2', onN2)
    // And a client id moves from the restarted node to another.
    const moved = await cluster.connect('n2', { clientId: 'restart-sub-n1', version: 5 })
    await a.peer.waitClosed('the connection on the restarted n1 to close when its client id connects on n2')
    await moved.peer.ping()

    // The will of the client connected to n1 when it died: published once (by n1 or a survivor).
    await watcher.waitFor('restart:will', TAKEOVER_MS)
    await cluster.roundTrip('n1', 'restart/will/fence', 'restart:fence:1', watcher)
    await cluster.roundTrip('n2', 'restart/will/fence', 'restart:fence:2', watcher)
    await observeQuiet(LEASE_MS)
    await cluster.roundTrip('n1', 'restart/will/fence', 'restart:fence:3', watcher)
    t.diagnostic(`n1 restarted in ${restartMs} ms`)
    assert.equal(watcher.delivered.get('restart:will'), 1, 'the will of the client of the killed n1, published once')
  })

  test("the publisher's node killed mid-flood: every message it PUBACKed reaches the subscriber on n1", { timeout: 120_000 }, async (t) => {
    await Promise.all(['n1', 'n2', 'n3'].map((id) => cluster.ensure(id)))
    const rng = rngFor(t)
    const killAt = rng.int(200, 1500)
    const topic = 'death/pub-node'
    const tag = 'dp'
    let sub!: AckingSubscriber
    const { peer } = await cluster.connect('n1', { clientId: 'death-pub-sub', version: 5, clean: false, sessionExpiry: 3600 }, (p) => (sub = new AckingSubscriber(p)))
    await subscribe(peer, 1, [{ topicFilter: topic, qos: 1 }])

    const { peer: pub } = await cluster.connect('n2', { clientId: 'death-pub-pub', version: 4 })
    const flood = new Flood(pub, {
      topic,
      qos: 1,
      tag,
      total: FLOOD,
      onAck: (n) => {
        if (n === killAt) cluster.killNow('n2')
      },
    }).start()
    await pub.waitClosed('the publisher connection to close when n2 is killed')
    await cluster.kill('n2')
    assert.deepEqual(flood.refused, [], 'PUBACK failure codes')
    assert.ok(flood.acked.length >= killAt, `the kill came after ${killAt} PUBACKs`)

    // No fence reaches into a dead publisher's node: wait (bounded) for what it acknowledged.
    await waitDelivered(flood.acked, [sub], TAKEOVER_MS, `the messages PUBACKed by the killed n2 to reach n1`, cluster)
    await cluster.roundTrip('n3', topic, `${tag}:end`, sub)
    t.diagnostic(
      `n2 killed at PUBACK ${killAt}: ${flood.acked.length} PUBACKed of ${flood.sent} sent; ${sub.delivered.size - 1} delivered ` +
        `(${duplicates([sub], (p) => indexIn(tag, p) !== undefined).length} duplicated)`,
    )
    assert.equal(peer.closed, false, 'the subscriber on n1 stayed connected')
  })
})
