// Crash test 5: retained messages set and cleared (QoS 1, RETAIN, an empty payload clears) on a
// few topics, the broker SIGKILLed after a random number of PUBACKs. After the restart the retained
// messages are exactly as acknowledged: the store holds the result of the first P operations, in
// the order they were sent, for some P no smaller than the number PUBACKed (a commit is atomic and
// in order), so each topic whose last operation was acknowledged holds exactly that, and the others
// hold that or the result of one of their later, unacknowledged operations.
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import type { Packet } from '../../src/protocol/packets.js'
import { BACKENDS, type BrokerProcess, Peer, type Rng, runTrials, skipBackend, some, subscribe, tail } from './harness.js'

const TOPICS = 20
/** PUBLISHes in flight at once. */
const WINDOW = 20

interface Op {
  topic: number
  /** The payload set, or null: cleared. */
  value: string | null
}

interface Trial {
  n: number
  ops: Op[]
  /** How many operations, from the first, were PUBACKed (PUBACKs come in order). */
  acked: number
  killAfter: number
}

const topicName = (n: number, k: number): string => `ret/${n}/${k}`

async function crashTrial(broker: BrokerProcess, n: number, rng: Rng): Promise<Trial> {
  const killAfter = rng.bool(0.2) ? rng.int(1, 20) : rng.int(21, 600)
  const ops: Op[] = []
  let acked = 0
  const version: 4 | 5 = rng.bool() ? 4 : 5
  const outOfOrder: string[] = []
  const { peer } = await Peer.connect(broker.port, { clientId: `ret-pub-${n}`, version })
  const sendNext = (): void => {
    const i = ops.length
    // Mostly sets, some clears; a topic may see many of both.
    const op: Op = { topic: rng.int(0, TOPICS - 1), value: rng.bool(0.3) ? null : `ret:${n}:${i}` }
    ops.push(op)
    peer.publish(topicName(n, op.topic), op.value ?? '', 1, (i % 65535) + 1, { retain: true })
  }
  peer.on((p: Packet) => {
    if (p.type !== 'puback') return
    // Acknowledgements keep the order of the PUBLISHes.
    if (p.packetId !== (acked % 65535) + 1) outOfOrder.push(`PUBACK ${p.packetId} after ${acked} acked`)
    acked++
    if (acked === killAfter) broker.killNow()
    if (acked < killAfter) sendNext()
  })
  peer.socket.cork()
  for (let i = 0; i < WINDOW; i++) sendNext()
  peer.socket.uncork()
  await peer.waitClosed('the connection to close when the broker is killed')
  await broker.kill()
  assert.ok(broker.killedBySigkill(), `the broker died of SIGKILL:\n${tail(broker)}`)
  assert.deepEqual(outOfOrder, [], 'PUBACKs in the order of the PUBLISHes')
  return { n, ops, acked, killAfter }
}

/** Topic -> retained payload after the first `p` operations (absent: none). */
function stateAfter(ops: readonly Op[], p: number): Map<number, string> {
  const state = new Map<number, string>()
  for (const op of ops.slice(0, p)) {
    if (op.value === null) state.delete(op.topic)
    else state.set(op.topic, op.value)
  }
  return state
}

async function verifyTrial(t: TestContext, broker: BrokerProcess, trial: Trial): Promise<void> {
  const { n } = trial
  // A retained marker on another topic: subscribed to after ret/n/#, its retained message is sent
  // behind all of ret/n/#'s, so once it arrives every retained message of ret/n/# has.
  const fence = `retfence/${n}`
  const { peer: pub } = await Peer.connect(broker.port, { clientId: `ret-fence-${n}` })
  let fenced = false
  pub.on((p) => {
    if (p.type === 'puback') fenced = true
  })
  pub.publish(fence, 'fence', 1, 1, { retain: true })
  await pub.until(() => fenced, 'PUBACK of the retained fence')
  await pub.disconnect()

  const found = new Map<number, string>()
  const problems: string[] = []
  let fenceSeen = false
  const { peer } = await Peer.connect(broker.port, { clientId: `ret-sub-${n}` })
  peer.on((p) => {
    if (p.type !== 'publish') return
    if (p.topic === fence) fenceSeen = true
    else {
      const k = Number(p.topic.slice(`ret/${n}/`.length))
      if (!p.retain) problems.push(`${p.topic} without RETAIN`)
      if (found.has(k)) problems.push(`${p.topic} twice`)
      found.set(k, p.payload.toString())
    }
  })
  await subscribe(peer, 1, [{ topicFilter: `ret/${n}/#`, qos: 0 }])
  await subscribe(peer, 2, [{ topicFilter: fence, qos: 0 }])
  await peer.until(() => fenceSeen, 'the retained fence')
  await peer.disconnect()
  assert.deepEqual(problems, [], 'retained messages as sent')

  const same = (a: Map<number, string>, b: Map<number, string>): boolean => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v)
  // The store holds some prefix of the operations, at least the acknowledged ones.
  const prefixes: number[] = []
  for (let p = trial.acked; p <= trial.ops.length; p++) if (same(stateAfter(trial.ops, p), found)) prefixes.push(p)
  const expected = stateAfter(trial.ops, trial.acked)
  const differ = [...new Set([...expected.keys(), ...found.keys()])]
    .filter((k) => expected.get(k) !== found.get(k))
    .map((k) => `${topicName(n, k)}: acknowledged ${expected.get(k) ?? '(none)'}, found ${found.get(k) ?? '(none)'}`)
  assert.ok(
    prefixes.length > 0,
    `retained messages after the kill are not the result of the ${trial.acked} acknowledged operations plus some of the ` +
      `${trial.ops.length - trial.acked} unacknowledged ones after them (trial ${n}): ${some(differ)}\n${tail(broker)}`,
  )
  t.diagnostic(
    `trial ${n}: kill after ${trial.killAfter} PUBACKs, ${trial.acked} of ${trial.ops.length} operations acked (${trial.ops.filter((o) => o.value === null).length} clears); ` +
      `the store holds the first ${prefixes[0]}${prefixes.length > 1 ? `..${prefixes[prefixes.length - 1]}` : ''}; ${found.size} topics retained`,
  )
}

describe('crash: retained messages across SIGKILL', { concurrency: true }, () => {
  for (const backend of BACKENDS) {
    test(`retained messages set and cleared are exactly as acknowledged after SIGKILL (${backend})`, { skip: skipBackend(backend), timeout: 180_000 }, async (t) => {
      await runTrials(t, backend, { crash: crashTrial, verify: verifyTrial })
    })
  }
})
