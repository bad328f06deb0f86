// Crash test 1: a QoS 1 flood to an offline persistent subscriber, the broker SIGKILLed after a
// random number of PUBACKs. After a restart on the same store, every message that was PUBACKed
// reaches the subscriber (duplicates are allowed for QoS 1, and counted).
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import type { Packet } from '../../src/protocol/packets.js'
import { AckingSubscriber, BACKENDS, type BrokerProcess, Peer, type Rng, runTrials, skipBackend, some, subscribe, tail } from './harness.js'

/** QoS 1 PUBLISHes in flight from the publisher at once. */
const WINDOW = 100

interface Trial {
  n: number
  version: 4 | 5
  subscriber: string
  topic: string
  /** Payloads the broker PUBACKed (with 0x00 for MQTT 5). */
  acked: Set<string>
  sent: number
  killAfter: number
}

/** Subscribes, goes offline, floods, and SIGKILLs the broker on the `killAfter`-th PUBACK. */
async function crashTrial(broker: BrokerProcess, n: number, rng: Rng): Promise<Trial> {
  const version: 4 | 5 = rng.bool() ? 4 : 5
  const subscriber = `q1-sub-${n}`
  const topic = `q1/${n}`
  const sub = (await Peer.connect(broker.port, { clientId: subscriber, version, clean: false, sessionExpiry: 3600 })).peer
  await subscribe(sub, 1, [{ topicFilter: topic, qos: 1 }])
  await sub.disconnect()

  // Now and then a kill right at the start, mostly somewhere in a flood of thousands.
  const killAfter = rng.bool(0.2) ? rng.int(1, 50) : rng.int(51, 3000)
  const trial: Trial = { n, version, subscriber, topic, acked: new Set(), sent: 0, killAfter }
  const pubVersion: 4 | 5 = rng.bool() ? 4 : 5
  const outstanding = new Map<number, string>()
  const refused: string[] = []
  let acks = 0
  const { peer: pub } = await Peer.connect(broker.port, { clientId: `q1-pub-${n}`, version: pubVersion })
  const sendNext = (): void => {
    const i = trial.sent++
    const packetId = (i % 65535) + 1
    const payload = `q1:${n}:${i}`
    outstanding.set(packetId, payload)
    pub.publish(topic, payload, 1, packetId)
  }
  pub.on((p: Packet) => {
    if (p.type !== 'puback') return
    const payload = outstanding.get(p.packetId)
    if (payload === undefined) return
    outstanding.delete(p.packetId)
    if ((p.reasonCode ?? 0) !== 0) {
      refused.push(`${payload}=0x${(p.reasonCode ?? 0).toString(16)}`)
      return
    }
    trial.acked.add(payload)
    if (++acks === killAfter) broker.killNow()
    // Every PUBACK the broker sent counts, also those arriving after the kill was sent.
    if (acks < killAfter) sendNext()
  })
  pub.socket.cork()
  for (let i = 0; i < WINDOW; i++) sendNext()
  pub.socket.uncork()
  await pub.waitClosed('the connection to close when the broker is killed')
  await broker.kill()
  assert.ok(broker.killedBySigkill(), `the broker died of SIGKILL, not before it (exit ${broker.exitCode}, ${broker.exitSignal}):\n${tail(broker)}`)
  assert.deepEqual(refused, [], 'PUBACK reason codes to an MQTT 5 publisher with a subscriber present')
  assert.ok(trial.acked.size >= killAfter, `the kill came after ${killAfter} PUBACKs`)
  return trial
}

/** On the restarted broker: every PUBACKed payload reaches the subscriber. */
async function verifyTrial(t: TestContext, broker: BrokerProcess, trial: Trial): Promise<void> {
  const end = `q1:${trial.n}:end`
  const { peer: pub } = await Peer.connect(broker.port, { clientId: `q1-end-${trial.n}` })
  let endAcked = false
  pub.on((p) => {
    if (p.type === 'puback' && p.packetId === 1) endAcked = true
  })
  // Queued behind everything restored for the session: once it arrives, all before it has.
  pub.publish(trial.topic, end, 1, 1)
  await pub.until(() => endAcked, 'PUBACK of the end marker')
  await pub.disconnect()

  let sub!: AckingSubscriber
  const { peer, connack } = await Peer.connect(broker.port, { clientId: trial.subscriber, version: trial.version, clean: false, sessionExpiry: 3600 }, (p) => (sub = new AckingSubscriber(p)))
  assert.equal(connack.sessionPresent, true, `the session of ${trial.subscriber} survived the kill`)
  await sub.waitFor(end)
  await peer.disconnect()

  const missing = [...trial.acked].filter((p) => !sub.delivered.has(p))
  let duplicates = 0
  let unackedDelivered = 0
  for (const [payload, count] of sub.delivered) {
    duplicates += count - 1
    if (!trial.acked.has(payload) && payload !== end) unackedDelivered++
  }
  t.diagnostic(
    `trial ${trial.n} (MQTT ${trial.version === 5 ? '5' : '3.1.1'} subscriber): kill after ${trial.killAfter} PUBACKs, ${trial.acked.size} acked of ${trial.sent} sent; ` +
      `after restart ${sub.delivered.size - 1} distinct delivered, ${duplicates} duplicates, ${unackedDelivered} stored but not acked`,
  )
  assert.equal(missing.length, 0, `PUBACKed messages lost in the crash of trial ${trial.n} (${missing.length} of ${trial.acked.size}: ${some(missing)})\nbroker log:\n${tail(broker)}`)
}

describe('crash: QoS 1 flood to an offline persistent session', { concurrency: true }, () => {
  for (const backend of BACKENDS) {
    test(`every PUBACKed QoS 1 message survives SIGKILL (${backend})`, { skip: skipBackend(backend), timeout: 180_000 }, async (t) => {
      await runTrials(t, backend, { crash: crashTrial, verify: verifyTrial })
    })
  }
})
