// Crash test 2: QoS 2 end to end. A publisher floods QoS 2 messages (packet identifiers reused
// as soon as PUBCOMP frees them) to an offline persistent QoS 2 subscriber; the broker is
// SIGKILLed after a random number of PUBRECs. After the restart the publisher resumes its session
// as the protocol says: PUBLISH again, with DUP, what got no PUBREC, PUBREL what did. Every message
// (every PUBREC'd one in particular) then reaches the subscriber exactly once, and messages sent on
// identifiers whose PUBCOMP came before the kill are not taken for duplicates.
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import type { Packet } from '../../src/protocol/packets.js'
import { AckingSubscriber, BACKENDS, type BrokerProcess, Peer, type Rng, runTrials, skipBackend, some, subscribe, tail } from './harness.js'

/** Packet identifiers the publisher cycles through (below the broker's Receive Maximum of 100). */
const IDS = 50

/** The publisher's side of QoS 2, across connections: what each packet identifier carries and how far it got. */
class Qos2Publisher {
  /** Packet identifier -> the message on it, and whether PUBREL (not PUBLISH) is what it waits on. */
  readonly outstanding = new Map<number, { payload: string; released: boolean }>()
  /** Every payload ever sent. */
  readonly sent: string[] = []
  /** Payloads the broker PUBREC'd. */
  readonly pubrecd = new Set<string>()
  completed = 0
  pubrecs = 0
  /** Send a new message on each identifier PUBCOMP frees. */
  flooding = true
  /** Called with the running PUBREC count. */
  onPubrec: (count: number) => void = () => {}
  readonly anomalies: string[] = []
  peer!: Peer
  private next = 0

  constructor(
    readonly trial: number,
    readonly topic: string,
  ) {}

  attach(peer: Peer): void {
    this.peer = peer
    peer.on((p: Packet) => this.handle(p))
  }

  sendNew(packetId: number, payload = `q2:${this.trial}:${this.next++}`): void {
    this.outstanding.set(packetId, { payload, released: false })
    this.sent.push(payload)
    this.peer.publish(this.topic, payload, 2, packetId)
  }

  /** After a reconnect: PUBLISH with DUP what was not PUBREC'd, PUBREL what was [MQTT-4.4.0-1]. */
  resume(): void {
    for (const [packetId, o] of this.outstanding) {
      if (o.released) this.peer.send({ type: 'pubrel', packetId })
      else this.peer.publish(this.topic, o.payload, 2, packetId, { dup: true })
    }
  }

  private handle(p: Packet): void {
    if (p.type === 'pubrec') {
      const o = this.outstanding.get(p.packetId)
      if (o === undefined) return void this.anomalies.push(`PUBREC for unused id ${p.packetId}`)
      if ((p.reasonCode ?? 0) >= 0x80) return void this.anomalies.push(`PUBREC ${p.packetId} (${o.payload}) with 0x${(p.reasonCode ?? 0).toString(16)}`)
      if (!o.released) {
        o.released = true
        this.pubrecd.add(o.payload)
        this.onPubrec(++this.pubrecs)
      }
      this.peer.send({ type: 'pubrel', packetId: p.packetId })
    } else if (p.type === 'pubcomp') {
      const o = this.outstanding.get(p.packetId)
      if (o === undefined || !o.released) return void this.anomalies.push(`PUBCOMP for id ${p.packetId} not released`)
      this.outstanding.delete(p.packetId)
      this.completed++
      if (this.flooding) this.sendNew(p.packetId)
    }
  }
}

interface Trial {
  n: number
  version: 4 | 5
  subscriber: string
  publisherId: string
  publisher: Qos2Publisher
  killAfter: number
  sentBeforeKill: number
  pubrecdBeforeKill: number
}

function sessionOptions(clientId: string, version: 4 | 5) {
  return { clientId, version, clean: false, sessionExpiry: 3600 }
}

async function crashTrial(broker: BrokerProcess, n: number, rng: Rng): Promise<Trial> {
  const version: 4 | 5 = rng.bool() ? 4 : 5
  const subscriber = `q2-sub-${n}`
  const topic = `q2/${n}`
  const sub = (await Peer.connect(broker.port, sessionOptions(subscriber, version))).peer
  await subscribe(sub, 1, [{ topicFilter: topic, qos: 2 }])
  await sub.disconnect()

  const killAfter = rng.bool(0.2) ? rng.int(1, 30) : rng.int(31, 1500)
  const publisherId = `q2-pub-${n}`
  const publisher = new Qos2Publisher(n, topic)
  publisher.onPubrec = (count) => {
    if (count === killAfter) {
      broker.killNow()
      publisher.flooding = false
    }
  }
  const { peer } = await Peer.connect(broker.port, sessionOptions(publisherId, rng.bool() ? 4 : 5), (p) => publisher.attach(p))
  peer.socket.cork()
  for (let id = 1; id <= IDS; id++) publisher.sendNew(id)
  peer.socket.uncork()
  await peer.waitClosed('the connection to close when the broker is killed')
  await broker.kill()
  assert.ok(broker.killedBySigkill(), `the broker died of SIGKILL, not before it:\n${tail(broker)}`)
  assert.deepEqual(publisher.anomalies, [], 'the publisher saw only expected acknowledgements')
  return { n, version, subscriber, publisherId, publisher, killAfter, sentBeforeKill: publisher.sent.length, pubrecdBeforeKill: publisher.pubrecd.size }
}

async function verifyTrial(t: TestContext, broker: BrokerProcess, trial: Trial): Promise<void> {
  const publisher = trial.publisher
  // The publisher resumes its session on the restarted broker.
  const resumed = publisher.outstanding.size
  const released = [...publisher.outstanding.values()].filter((o) => o.released).length
  const { peer, connack } = await Peer.connect(broker.port, { ...sessionOptions(trial.publisherId, publisher.peer.version as 4 | 5) }, (p) => publisher.attach(p))
  assert.equal(connack.sessionPresent, true, `the publisher's session ${trial.publisherId} survived the kill`)
  publisher.resume()
  await peer.until(() => publisher.outstanding.size === 0, () => `the ${resumed} resumed QoS 2 flows to complete (${publisher.outstanding.size} left)`)
  // Every identifier again, now that PUBCOMP freed it (before the kill or after): a new message each.
  for (let id = 1; id <= IDS; id++) publisher.sendNew(id)
  await peer.until(() => publisher.outstanding.size === 0, 'the messages on reused identifiers to complete')
  const end = `q2:${trial.n}:end`
  publisher.sendNew(1, end)
  await peer.until(() => publisher.outstanding.size === 0, 'the end marker to complete')
  await peer.disconnect()
  assert.deepEqual(publisher.anomalies, [], 'the publisher saw only expected acknowledgements after the restart')

  let sub!: AckingSubscriber
  const s = await Peer.connect(broker.port, sessionOptions(trial.subscriber, trial.version), (p) => (sub = new AckingSubscriber(p)))
  assert.equal(s.connack.sessionPresent, true, `the session of ${trial.subscriber} survived the kill`)
  await sub.waitFor(end)
  // The end marker is the last message: once its QoS 2 flow is done nothing else may come.
  await s.peer.ping()
  await s.peer.disconnect()

  const notOnce = (payloads: Iterable<string>): string[] => [...payloads].filter((p) => sub.delivered.get(p) !== 1).map((p) => `${p}×${sub.delivered.get(p) ?? 0}`)
  const strays = [...sub.delivered.keys()].filter((p) => !publisher.sent.includes(p))
  t.diagnostic(
    `trial ${trial.n}: kill after ${trial.killAfter} PUBRECs (${trial.pubrecdBeforeKill} PUBREC'd of ${trial.sentBeforeKill} sent); after the restart ` +
      `${resumed - released} PUBLISHed again with DUP, ${released} PUBRELed again; ${publisher.sent.length} sent in all, ${sub.delivered.size} distinct delivered`,
  )
  assert.deepEqual(notOnce(publisher.pubrecd), [], `PUBREC'd messages not delivered exactly once (trial ${trial.n}):\n${tail(broker)}`)
  const wrong = notOnce(publisher.sent)
  assert.deepEqual(wrong, [], `messages not delivered exactly once though the publisher completed every flow (trial ${trial.n}): ${some(wrong)}`)
  assert.deepEqual(strays, [], 'the subscriber got only what was published')
}

describe('crash: QoS 2 exactly once across SIGKILL', { concurrency: true }, () => {
  for (const backend of BACKENDS) {
    test(`QoS 2 publisher resumes after SIGKILL; every PUBREC'd message delivered exactly once (${backend})`, { skip: skipBackend(backend), timeout: 180_000 }, async (t) => {
      await runTrials(t, backend, { crash: crashTrial, verify: verifyTrial })
    })
  }
})
