// Crash test 3: a persistent session subscribes to 100 filters (in SUBSCRIBE packets of random
// sizes, at random QoS, some with wildcards) and the broker is SIGKILLed in the very callback that
// sees the last SUBACK. After the restart, without subscribing again, the session is present and a
// publish to each of the 100 arrives, at the QoS each subscription was granted.
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import type { Packet } from '../../src/protocol/packets.js'
import { AckingSubscriber, BACKENDS, type BrokerProcess, Peer, type Rng, runTrials, skipBackend, some, tail } from './harness.js'

const FILTERS = 100

interface Filter {
  topicFilter: string
  /** A topic it matches. */
  topic: string
  qos: 1 | 2
}

interface Trial {
  n: number
  version: 4 | 5
  clientId: string
  filters: Filter[]
  packets: number
}

function filtersFor(n: number, rng: Rng): Filter[] {
  const filters: Filter[] = []
  for (let k = 0; k < FILTERS; k++) {
    const qos: 1 | 2 = rng.bool() ? 1 : 2
    const shape = rng.int(0, 3)
    // Each filter matches its own topic only, whatever its shape.
    if (shape === 0) filters.push({ topicFilter: `subs/${n}/${k}/#`, topic: `subs/${n}/${k}/x`, qos })
    else if (shape === 1) filters.push({ topicFilter: `subs/${n}/${k}/+`, topic: `subs/${n}/${k}/y`, qos })
    else filters.push({ topicFilter: `subs/${n}/${k}`, topic: `subs/${n}/${k}`, qos })
  }
  return filters
}

async function crashTrial(broker: BrokerProcess, n: number, rng: Rng): Promise<Trial> {
  const version: 4 | 5 = rng.bool() ? 4 : 5
  const clientId = `subs-${n}`
  const filters = filtersFor(n, rng)
  // SUBSCRIBE packets of 1 to 10 filters, all sent at once.
  const groups: Filter[][] = []
  for (let k = 0; k < filters.length; ) {
    const size = Math.min(rng.int(1, 10), filters.length - k)
    groups.push(filters.slice(k, k + size))
    k += size
  }
  let subacks = 0
  const refused: string[] = []
  const { peer } = await Peer.connect(broker.port, { clientId, version, clean: false, sessionExpiry: 3600 }, (p) =>
    p.on((packet: Packet) => {
      if (packet.type !== 'suback') return
      const group = groups[packet.packetId - 1] ?? []
      packet.reasonCodes.forEach((code, i) => {
        if (code !== group[i]?.qos) refused.push(`${group[i]?.topicFilter}: 0x${code.toString(16)}`)
      })
      // Right here, in the callback of the last SUBACK: nothing more of the broker runs before the kill.
      if (++subacks === groups.length) broker.killNow()
    }),
  )
  peer.socket.cork()
  groups.forEach((group, i) => peer.send({ type: 'subscribe', packetId: i + 1, subscriptions: group.map(({ topicFilter, qos }) => ({ topicFilter, qos })) }))
  peer.socket.uncork()
  await peer.waitClosed('the connection to close when the broker is killed')
  await broker.kill()
  assert.ok(broker.killedBySigkill(), `the broker died of SIGKILL:\n${tail(broker)}`)
  assert.equal(subacks, groups.length, 'every SUBACK came before the kill')
  assert.deepEqual(refused, [], 'SUBACK granted each filter its QoS')
  return { n, version, clientId, filters, packets: groups.length }
}

async function verifyTrial(t: TestContext, broker: BrokerProcess, trial: Trial): Promise<void> {
  let sub!: AckingSubscriber
  const qosOf = new Map<string, number>()
  const { peer, connack } = await Peer.connect(broker.port, { clientId: trial.clientId, version: trial.version, clean: false, sessionExpiry: 3600 }, (p) => {
    sub = new AckingSubscriber(p)
    p.on((packet) => {
      if (packet.type === 'publish') qosOf.set(packet.payload.toString(), packet.qos)
    })
  })
  assert.equal(connack.sessionPresent, true, `the session of ${trial.clientId} survived the kill`)

  // An MQTT 5 publisher: PUBREC 0x10 (No matching subscribers) would tell a lost subscription at once.
  const { peer: pub } = await Peer.connect(broker.port, { clientId: `subs-pub-${trial.n}`, version: 5 })
  const unmatched: string[] = []
  let done = 0
  pub.on((p) => {
    if (p.type === 'pubrec') {
      const code = p.reasonCode ?? 0
      if (code !== 0) unmatched.push(`${trial.filters[p.packetId - 1]?.topicFilter}: PUBREC 0x${code.toString(16)}`)
      pub.send({ type: 'pubrel', packetId: p.packetId })
    } else if (p.type === 'pubcomp') done++
  })
  pub.socket.cork()
  trial.filters.forEach((f, k) => pub.publish(f.topic, `subs:${trial.n}:${k}`, 2, k + 1))
  pub.socket.uncork()
  await pub.until(() => done === FILTERS, () => `${FILTERS} PUBCOMPs (${done} so far)`)
  await pub.disconnect()
  assert.deepEqual(unmatched, [], `subscriptions lost in the crash (trial ${trial.n}, ${trial.packets} SUBSCRIBE packets)\n${tail(broker)}`)

  // Every publish matched a subscription of the session (the PUBRECs say so): each arrives.
  await peer.until(
    () => trial.filters.every((_, k) => sub.delivered.has(`subs:${trial.n}:${k}`)),
    () => `all ${FILTERS} messages (missing: ${some(trial.filters.map((f, k) => (sub.delivered.has(`subs:${trial.n}:${k}`) ? '' : f.topicFilter)).filter(Boolean))})`,
  )
  await peer.ping()
  await peer.disconnect()
  const wrongQos = trial.filters.flatMap((f, k) => (qosOf.get(`subs:${trial.n}:${k}`) === f.qos ? [] : [`${f.topicFilter}: granted ${f.qos}, delivered at ${qosOf.get(`subs:${trial.n}:${k}`)}`]))
  assert.deepEqual(wrongQos, [], 'each message arrives at the QoS its restored subscription was granted')
  const twice = [...sub.delivered].filter(([, c]) => c !== 1).map(([p, c]) => `${p}×${c}`)
  assert.deepEqual(twice, [], 'each message arrives once')
  t.diagnostic(`trial ${trial.n} (MQTT ${trial.version === 5 ? '5' : '3.1.1'}): ${FILTERS} filters in ${trial.packets} SUBSCRIBE packets, killed on the last SUBACK; all ${FILTERS} restored`)
}

describe('crash: subscriptions across SIGKILL', { concurrency: true }, () => {
  for (const backend of BACKENDS) {
    test(`100 subscriptions survive a SIGKILL right after the last SUBACK (${backend})`, { skip: skipBackend(backend), timeout: 180_000 }, async (t) => {
      await runTrials(t, backend, { crash: crashTrial, verify: verifyTrial })
    })
  }
})
