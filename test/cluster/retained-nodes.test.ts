// Cluster: retained messages across nodes. A node started after 1,000 retained topics were set on
// another serves all 1,000 to a `#` subscriber (its index loaded at start), and follows the
// changes made after it joined. Concurrent sets of the same topics on n1 and n2 converge: after a
// fence, new subscribers on n1, n2 and n3 each get one retained message per topic, the same one on
// every node.
import assert from 'node:assert/strict'
import type { MqttClient } from 'mqtt'
import { after, before, describe, test } from 'node:test'
import type { Packet } from '../../src/protocol/packets.js'
import type { Inbox } from '../helpers/mqtt.js'
import { Cluster, type Peer, ping, skipCluster, some, WAIT_MS } from './harness.js'
import { realTimer } from '../helpers/wait.js'

/** Retained topics set before n3 starts. */
const TOPICS = 1000
/** Topics set concurrently from n1 and n2, per round. */
const RACES = 200
/** Rounds of the race (the same order on both nodes in even rounds, opposite orders in odd ones). */
const ROUNDS = 4
/** PUBLISHes unacknowledged at once from one raw client. */
const WINDOW = 50

/**
 * Publishes `messages` (QoS 1, retained) from a raw client through a window of WINDOW, and
 * resolves once every one was acknowledged with success. `start` false: the caller corks and
 * starts several at once.
 */
function retainAll(peer: Peer, messages: ReadonlyArray<{ topic: string; payload: string }>): { start(): void; done: Promise<void> } {
  let next = 0
  let acked = 0
  const failures: string[] = []
  const packetIds = new Map<number, number>()
  const send = (): void => {
    const i = next++
    const packetId = (i % 65000) + 1
    packetIds.set(packetId, i)
    const m = messages[i] as { topic: string; payload: string }
    peer.publish(m.topic, m.payload, 1, packetId, { retain: true })
  }
  peer.on((p: Packet) => {
    if (p.type !== 'puback' || !packetIds.has(p.packetId)) return
    const i = packetIds.get(p.packetId) as number
    packetIds.delete(p.packetId)
    if ((p.reasonCode ?? 0) >= 0x80) failures.push(`${messages[i]?.topic}=0x${(p.reasonCode ?? 0).toString(16)}`)
    acked++
    if (next < messages.length) send()
  })
  let started!: () => void
  const go = new Promise<void>((resolve) => (started = resolve))
  const done = go.then(async () => {
    await peer.until(() => acked === messages.length || peer.closed, () => `the acknowledgements of ${messages.length} retained messages (${acked} so far)`, WAIT_MS * 2)
    if (acked < messages.length) throw new Error(`the connection closed after ${acked} of ${messages.length} retained messages`)
    if (failures.length > 0) throw new Error(`retained messages refused: ${some(failures)}`)
  })
  return {
    start: () => {
      while (next < Math.min(WINDOW, messages.length)) send()
      started()
    },
    done,
  }
}

/** The retained messages a new subscription to `filter` gets, topic -> payloads (in arrival order), fenced by PINGREQ once `expected` arrived. */
async function retainedFor(client: MqttClient, inbox: Inbox, filter: string, expected: number, what: string): Promise<Map<string, string[]>> {
  const from = inbox.messages.length
  await client.subscribeAsync(filter, { qos: 1 })
  await inbox.until((m) => m.length - from >= expected, WAIT_MS, `${expected} retained messages for ${what}`)
  await ping(client)
  const out = new Map<string, string[]>()
  for (const m of inbox.messages.slice(from)) {
    const list = out.get(m.topic) ?? []
    list.push(`${m.payload}${m.retain ? '' : ' (not retained)'}`)
    out.set(m.topic, list)
  }
  await client.unsubscribeAsync(filter)
  return out
}

/**
 * Subscribes to `filter` again and again until the retained messages it gets include every
 * `topic: payload` of `fences` (retained messages set elsewhere after what must be in this node's
 * index first), for WAIT_MS at most.
 */
async function awaitFences(client: MqttClient, inbox: Inbox, filter: string, fences: ReadonlyMap<string, string>, node: string): Promise<number> {
  const deadline = performance.now() + WAIT_MS
  for (let attempt = 1; ; attempt++) {
    const from = inbox.messages.length
    await client.subscribeAsync(filter, { qos: 1 })
    await ping(client)
    const got = inbox.messages.slice(from)
    await client.unsubscribeAsync(filter)
    if ([...fences].every(([topic, payload]) => got.some((m) => m.topic === topic && m.payload === payload && m.retain))) return attempt
    if (performance.now() > deadline) throw new Error(`the fences ${JSON.stringify([...fences])} not in the retained index of ${node} after ${attempt} subscriptions; last got ${JSON.stringify(got.map((m) => `${m.topic}:${m.payload}`))}`)
    // A back-off between subscriptions, as connectRetrying's; not a synchronisation.
    await new Promise<void>((resolve) => realTimer(50, resolve))
  }
}

describe('cluster: retained messages across nodes', { skip: skipCluster() }, () => {
  let cluster: Cluster
  before(async () => {
    cluster = await Cluster.start(['n1', 'n2'])
  })
  after(() => cluster?.dispose())

  test(`n3, started after ${TOPICS} retained topics were set on n1, serves all ${TOPICS} to a # subscriber, and follows later changes`, { timeout: 60_000 }, async (t) => {
    const topic = (i: number): string => `rk/${Math.floor(i / 100)}/${i}`
    const { peer: setter } = await cluster.connect('n1', { clientId: 'rk-setter', version: 5 })
    const set = retainAll(
      setter,
      Array.from({ length: TOPICS }, (_, i) => ({ topic: topic(i), payload: `rk:${i}` })),
    )
    set.start()
    await set.done

    const t0 = performance.now()
    await cluster.startNode('n3')
    const startMs = Math.round(performance.now() - t0)
    const sub = await cluster.mqtt('n3', { clientId: 'rk-sub-n3', protocolVersion: 5 })
    const got = await retainedFor(sub.client, sub.inbox, '#', TOPICS, '# on n3')
    const wrong = [...got].filter(([topicName, payloads]) => {
      const i = Number(topicName.split('/').at(-1))
      return topicName !== topic(i) || payloads.length !== 1 || payloads[0] !== `rk:${i}`
    })
    t.diagnostic(`n3 started in ${startMs} ms; its # subscriber got ${sub.inbox.messages.length} retained messages on ${got.size} topics`)
    assert.equal(got.size, TOPICS, `topics of the retained messages n3 sent for # (${sub.inbox.messages.length} messages)`)
    assert.deepEqual(wrong.slice(0, 20), [], `topics with other than their one retained message (${wrong.length} in all)`)

    // Changed after n3 joined, on n2: 10 set again, 10 cleared; then a fence set on n1.
    const { peer: changer } = await cluster.connect('n2', { clientId: 'rk-changer', version: 5 })
    const changes = [
      ...Array.from({ length: 10 }, (_, i) => ({ topic: topic(i), payload: `rk:${i}:again` })),
      ...Array.from({ length: 10 }, (_, i) => ({ topic: topic(10 + i), payload: '' })),
    ]
    const change = retainAll(changer, changes)
    change.start()
    await change.done
    const fence = retainAll(setter, [{ topic: 'rk/fence', payload: 'rk:fence' }])
    fence.start()
    await fence.done
    // The fence was set on n1 after every change made on n2 was acknowledged: once n3's index has it, it has the changes.
    await awaitFences(sub.client, sub.inbox, 'rk/fence', new Map([['rk/fence', 'rk:fence']]), 'n3')
    const later = await retainedFor(sub.client, sub.inbox, 'rk/0/#', 90, 'rk/0/# on n3')
    const expectedLater = new Map<string, string[]>()
    for (let i = 0; i < 100; i++) if (i < 10 || i >= 20) expectedLater.set(topic(i), [i < 10 ? `rk:${i}:again` : `rk:${i}`])
    const sorted = (m: Map<string, string[]>): Array<[string, string[]]> => [...m].sort(([a], [b]) => a.localeCompare(b))
    assert.deepEqual(sorted(later), sorted(expectedLater), 'rk/0/# on n3 after 10 topics were set again and 10 cleared on n2')
  })

  test(`${ROUNDS} x ${RACES} topics set at the same moment on n1 and on n2 converge: after a fence, new subscribers on n1, n2 and n3 get the same single retained message per topic`, { timeout: 60_000 }, async (t) => {
    await Promise.all(['n1', 'n2', 'n3'].map((id) => cluster.ensure(id)))
    const TOTAL = RACES * ROUNDS
    const topic = (i: number): string => `rr/race/${Math.floor(i / RACES)}/${i}`
    const setters = new Map<string, Peer>()
    for (const node of ['n1', 'n2']) setters.set(node, (await cluster.connect(node, { clientId: `rr-setter-${node}`, version: 5 })).peer)
    for (let round = 0; round < ROUNDS; round++) {
      // Each node sets every topic of the round, both floods let go in the same turn.
      const runs = ['n1', 'n2'].map((node) => {
        const order = Array.from({ length: RACES }, (_, i) => round * RACES + i)
        if (round % 2 === 1 && node === 'n2') order.reverse()
        return retainAll(setters.get(node) as Peer, order.map((i) => ({ topic: topic(i), payload: `${node}:${i}` })))
      })
      for (const peer of setters.values()) peer.socket.cork()
      for (const run of runs) run.start()
      for (const peer of setters.values()) peer.socket.uncork()
      await Promise.all(runs.map((run) => run.done))
    }

    // Fences: a retained message set on each of n1 and n2 after all of the above was acknowledged.
    const fences = new Map<string, string>()
    for (const node of ['n1', 'n2']) {
      const f = retainAll(setters.get(node) as Peer, [{ topic: `rr/fence/${node}`, payload: `fence:${node}` }])
      f.start()
      await f.done
      fences.set(`rr/fence/${node}`, `fence:${node}`)
    }

    const views = new Map<string, Map<string, string[]>>()
    const attempts: string[] = []
    for (const node of ['n1', 'n2', 'n3']) {
      const sub = await cluster.mqtt(node, { clientId: `rr-sub-${node}`, protocolVersion: 5 })
      attempts.push(`${node} ${await awaitFences(sub.client, sub.inbox, 'rr/fence/#', fences, node)}`)
      views.set(node, await retainedFor(sub.client, sub.inbox, 'rr/race/#', TOTAL, `rr/race/# on ${node}`))
    }

    const problems: string[] = []
    const winners = { n1: 0, n2: 0 }
    for (let i = 0; i < TOTAL; i++) {
      const seen = ['n1', 'n2', 'n3'].map((node) => `${node}=${(views.get(node)?.get(topic(i)) ?? []).join('|') || 'none'}`)
      const values = ['n1', 'n2', 'n3'].map((node) => views.get(node)?.get(topic(i)) ?? [])
      const first = values[0] ?? []
      const same = values.every((v) => v.length === 1 && v[0] === first[0])
      const valid = first.length === 1 && (first[0] === `n1:${i}` || first[0] === `n2:${i}`)
      if (!same || !valid) problems.push(`${topic(i)}: ${seen.join(' ')}`)
      else winners[(first[0] as string).startsWith('n1:') ? 'n1' : 'n2']++
    }
    t.diagnostic(`fenced after ${attempts.join(', ')} subscriptions; last set wins: n1's ${winners.n1}, n2's ${winners.n2}; ${problems.length} topics differ (per round: ${Array.from({ length: ROUNDS }, (_, r) => problems.filter((p) => p.startsWith(`rr/race/${r}/`)).length).join(', ')})`)
    assert.deepEqual(problems.slice(0, 20), [], `topics whose retained message is not one and the same on n1, n2 and n3 (${problems.length} of ${TOTAL})\n${cluster.logs()}`)
    for (const node of ['n1', 'n2', 'n3']) assert.equal(views.get(node)?.size, TOTAL, `topics with a retained message on ${node}`)
  })
})
