/**
 * "No loop with a bridge in each direction": Culex bridges `loop/#` to a real Mosquitto while that
 * Mosquitto bridges `loop/#` back to Culex, at the same time. N QoS 1 messages are published on
 * each side; each subscriber must get each of them exactly as many times as the topology's ways
 * bring it (once, unless it says), and Culex must receive exactly the PUBLISH packets a loop-free
 * topology sends it (`broker.stats()`), checked after a fence.
 *
 * The fence: once every message reached both subscribers, a marker is published on each side and
 * awaited at both subscribers, twice (two rounds). Each hop (Culex's bridge outbox, Mosquitto's
 * bridge queue, a connection) is FIFO, and a marker is published only after every message reached
 * the other side, where it was queued for the way back in the same routing step: an echo of a
 * message would be queued on that way back before the other side's marker, so it arrives before
 * that marker does. One round bounds the first echo; the second round bounds an echo of an echo
 * (and a copy that took a slower of two ways). A message looping for good is also seen long before
 * (the waits give up at the first duplicate) and in the counters.
 *
 * Two bridges on the same topics loop by default; those four tests set `forwardBridged: false` on
 * Culex's bridge, and check exactly the copies the two ways still bring (see twoBridges), with the
 * same fence, so that any further echo fails them. A test with the loop protection defeated on
 * purpose (no bridge flag either way, `forwardBridged` left true) shows the detector sees the loop,
 * then closes both bridges so that it cannot run away. The second group holds the
 * loop-free ways of bridging each direction (one bridge with both, a Mosquitto bridge into Culex,
 * two bridges on disjoint topics), with the same checks, and shows the detector sees even a
 * single echo (a 3.1.1 bridge without the bridge flag).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import type { BridgeHandle, BridgeTopic } from '../../src/index.js'
import { findMosquitto, freePort, Inbox, startBroker, until, Waiters, type TestBroker } from '../helpers/index.js'
import { startMosquittoWith, type Mosquitto } from './mosquitto.js'

const mosquitto = findMosquitto()

/** Messages published on each side. */
const N = 20

/** Culex's outgoing bridge to Mosquitto (none when undefined). */
interface CulexSide {
  topics: BridgeTopic[]
  protocolVersion: 4 | 5
  tryPrivate: boolean
  /** The bridge's `forwardBridged` (default true). */
  forwardBridged?: boolean
}

/** Mosquitto's `connection` block toward Culex (none when undefined). */
interface MosquittoSide {
  /** `topic` lines, as in mosquitto.conf. */
  topics: string[]
  tryPrivate: boolean
}

interface Topology {
  culex?: CulexSide | undefined
  mosquitto?: MosquittoSide | undefined
  /**
   * How many times a message reaches Culex (PUBLISH packets from any connection) in a loop-free
   * topology: from its publisher (a Culex message), over each way in from Mosquitto (a Mosquitto
   * message).
   */
  atCulex: { culex: number; mosquitto: number }
  /**
   * How many times each subscriber gets a message published on Culex (`culex`) and on Mosquitto
   * (`mosquitto`): exactly, after the fence. Default once everywhere.
   */
  copies?: { culexSub: { culex: number; mosquitto: number }; remoteSub: { culex: number; mosquitto: number } }
  /** The client ids a message published on each side reaches Culex from, sorted (checked when given). */
  culexSources?: { culex: string[]; mosquitto: string[] }
}

/** Which side published `payload`. */
const origin = (payload: string): 'culex' | 'mosquitto' => (payload.startsWith('culex-') || payload.startsWith('marker-culex-') ? 'culex' : 'mosquitto')

/** How many copies of `payload` the subscriber on `side` is to get in `t`. */
function expectedCopies(t: Topology, side: 'culexSub' | 'remoteSub', payload: string): number {
  return t.copies?.[side][origin(payload)] ?? 1
}

/**
 * Both directions on `loop/#` in each broker's bridge, the one toward the other. Without
 * `forwardBridged: false` on Culex's bridge this loops (the expectations are those of a loop-free
 * pair, for the detector); with it, what is left is the copies each way brings, checked exactly:
 *
 * - out/out: a Culex message goes to Mosquitto over Culex's bridge, and Mosquitto (which forwards
 *   what came in over a bridge, as Culex's default does) sends it back once over its own bridge:
 *   Culex's subscriber gets it twice. It stops there: Culex's bridge refuses what Mosquitto's bridge
 *   publishes. A Mosquitto message reaches Culex once and goes no further.
 * - both/both: there are two ways each direction (a push and a pull). A Culex message reaches
 *   Mosquitto both ways (its subscriber gets it twice); the copy that came over Culex's bridge is
 *   pushed back by Mosquitto's bridge, the one its bridge pulled is pulled back by Culex's bridge:
 *   Culex's subscriber gets it three times. A Mosquitto message reaches Culex both ways (twice).
 *   It stops there: what Culex's bridge brings in goes neither back out over it (No Local) nor to
 *   Mosquitto's bridge (an incoming bridge), and what Mosquitto's bridge brings in does not go out
 *   over Culex's bridge.
 */
function twoBridges(direction: 'out' | 'both', protocolVersion: 4 | 5, tryPrivate: boolean, forwardBridged?: boolean): Topology {
  const culex: CulexSide = { topics: [{ filter: 'loop/#', direction, qos: 1 }], protocolVersion, tryPrivate }
  const mosquitto = { topics: [`topic loop/# ${direction} 1`], tryPrivate }
  if (forwardBridged !== false) {
    // out: Mosquitto's bridge pushes. both: Mosquitto's bridge pushes and Culex's bridge pulls.
    return { culex, mosquitto, atCulex: { culex: 1, mosquitto: direction === 'both' ? 2 : 1 } }
  }
  culex.forwardBridged = false
  if (direction === 'out') {
    return {
      culex,
      mosquitto,
      atCulex: { culex: 2, mosquitto: 1 },
      copies: { culexSub: { culex: 2, mosquitto: 1 }, remoteSub: { culex: 1, mosquitto: 1 } },
      culexSources: { culex: ['culex-pub', 'mosquitto-bridge'], mosquitto: ['mosquitto-bridge'] },
    }
  }
  return {
    culex,
    mosquitto,
    atCulex: { culex: 3, mosquitto: 2 },
    copies: { culexSub: { culex: 3, mosquitto: 2 }, remoteSub: { culex: 2, mosquitto: 1 } },
    culexSources: { culex: ['bridge:loop', 'culex-pub', 'mosquitto-bridge'], mosquitto: ['bridge:loop', 'mosquitto-bridge'] },
  }
}

/** Both brokers, each bridged to the other, with a publisher and a `loop/#` subscriber on each side. */
interface Pair {
  culex: TestBroker
  remote: Mosquitto
  handle: BridgeHandle | undefined
  culexSub: Inbox
  remoteSub: Inbox
  culexPub: MqttClient
  remotePub: MqttClient
  /** Payloads of the PUBLISH packets Culex received from any connection (its own bridge's included), in order. */
  culexReceived: string[]
  /** The client id each of those came from, in the same order. */
  culexSources: string[]
  waiters: Waiters
  close(): Promise<void>
}

/** An MQTT.js client (3.1.1) on `port`, subscribed to `loop/#` at QoS 1 when it has an inbox. */
async function connect(port: number, clientId: string, subscribe: boolean): Promise<{ client: MqttClient; inbox: Inbox | undefined }> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, clean: true, reconnectPeriod: 0, protocolVersion: 4 })
  const inbox = subscribe ? new Inbox(client) : undefined
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
  })
  client.on('error', () => {})
  if (subscribe) await client.subscribeAsync('loop/#', { qos: 1 })
  return { client, inbox }
}

async function startPair(t: Topology): Promise<Pair> {
  const dir = mkdtempSync(join(tmpdir(), 'culex-loop-'))
  const clients: MqttClient[] = []
  let culex: TestBroker | undefined
  let remote: Mosquitto | undefined
  let handle: BridgeHandle | undefined
  const close = async (): Promise<void> => {
    // The bridges first, at once: whatever might still bounce stops here.
    await handle?.close()
    await remote?.stop()
    for (const c of clients) await c.endAsync(true)
    await culex?.close()
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    culex = await startBroker()
    const waiters = new Waiters()
    const culexReceived: string[] = []
    const culexSources: string[] = []
    culex.broker.on('publish', (message, client) => {
      if (client === null || !message.topic.startsWith('loop/')) return
      culexReceived.push(message.payload.toString())
      culexSources.push(client.id)
      waiters.notify()
    })
    const mport = await freePort()
    if (t.mosquitto === undefined) {
      remote = await startMosquittoWith(mosquitto.path as string, dir, mport, [])
    } else {
      remote = await startMosquittoWith(mosquitto.path as string, dir, mport, [
        'connection culex',
        `address 127.0.0.1:${culex.port}`,
        'remote_clientid mosquitto-bridge',
        'bridge_protocol_version mqttv311',
        `try_private ${t.mosquitto.tryPrivate}`,
        'cleansession true',
        // No $SYS state messages on Culex: its counters see the loop/ messages alone.
        'notifications false',
        'restart_timeout 1',
        ...t.mosquitto.topics,
      ])
      await until(() => culex?.broker.getClient('mosquitto-bridge') !== undefined, 10_000, "Mosquitto's bridge connected to Culex")
      if (t.mosquitto.topics.some((l) => / (in|both) /.test(l))) {
        await until(() => (culex?.broker.getSubscriptions('mosquitto-bridge') ?? []).length > 0, 10_000, "Mosquitto's bridge subscribed on Culex")
      }
    }
    if (t.culex !== undefined) {
      let up = false
      culex.broker.on('bridgeUp', () => {
        up = true
        waiters.notify()
      })
      handle = await culex.broker.bridge({
        name: 'loop',
        url: `mqtt://127.0.0.1:${mport}`,
        topics: t.culex.topics,
        protocolVersion: t.culex.protocolVersion,
        tryPrivate: t.culex.tryPrivate,
        ...(t.culex.forwardBridged === undefined ? {} : { forwardBridged: t.culex.forwardBridged }),
        cleanSession: true,
        reconnectPeriod: 50,
        maxReconnectPeriod: 400,
      })
      await waiters.until(() => up, 10_000, "Culex's bridge up")
      if (t.culex.topics.some((x) => x.direction !== 'out')) {
        await remote.waitFor((l) => l.endsWith('Sending SUBACK to culex-bridge-loop'), "Culex's bridge subscribed on Mosquitto")
      }
    }

    const culexSub = await connect(culex.port, 'culex-sub', true)
    const remoteSub = await connect(mport, 'remote-sub', true)
    const culexPub = await connect(culex.port, 'culex-pub', false)
    const remotePub = await connect(mport, 'remote-pub', false)
    clients.push(culexSub.client, remoteSub.client, culexPub.client, remotePub.client)
    return {
      culex,
      remote,
      handle,
      culexSub: culexSub.inbox as Inbox,
      remoteSub: remoteSub.inbox as Inbox,
      culexPub: culexPub.client,
      remotePub: remotePub.client,
      culexReceived,
      culexSources,
      waiters,
      close,
    }
  } catch (error) {
    await close()
    throw error
  }
}

/** How many times each payload is in `payloads`. */
function tally(payloads: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const p of payloads) counts.set(p, (counts.get(p) ?? 0) + 1)
  return counts
}

/** The payloads seen more than once, with their counts, for failure messages. */
function duplicates(payloads: readonly string[]): string {
  return JSON.stringify([...tally(payloads)].filter(([, n]) => n > 1))
}

/** The client ids `payload` reached Culex from, in order. */
function sources(p: Pair, payload: string): string[] {
  return p.culexSources.filter((_, i) => p.culexReceived[i] === payload)
}

/** Whether the subscriber on `side` got some payload more times than `t` expects (once, unless `t.copies` says). */
const tooMany = (t: Topology, side: 'culexSub' | 'remoteSub', inbox: Inbox): boolean =>
  [...tally(inbox.messages.map((m) => m.payload))].some(([payload, n]) => n > expectedCopies(t, side, payload))

/**
 * Waits until both subscribers have every payload in `payloads` as many times as `t` expects;
 * fails at the first copy beyond that anywhere (a loop, or a message taking two ways).
 */
async function allArrive(p: Pair, t: Topology, payloads: readonly string[], what: string): Promise<void> {
  const has = (side: 'culexSub' | 'remoteSub', inbox: Inbox): boolean => {
    const counts = tally(inbox.messages.map((m) => m.payload))
    return payloads.every((x) => (counts.get(x) ?? 0) >= expectedCopies(t, side, x))
  }
  const report = (): string =>
    `${what}; the first message reached Culex from ${JSON.stringify(sources(p, payloads[0] as string))}; Culex subscriber duplicates ${duplicates(p.culexSub.messages.map((m) => m.payload))}, ` +
    `Mosquitto subscriber duplicates ${duplicates(p.remoteSub.messages.map((m) => m.payload))}, ` +
    `Culex received ${p.culexReceived.length} PUBLISH (duplicates ${duplicates(p.culexReceived)})`
  // Polled (two inboxes to watch); fails at the first duplicate rather than waiting out the deadline.
  await until(
    () => {
      if (tooMany(t, 'culexSub', p.culexSub) || tooMany(t, 'remoteSub', p.remoteSub)) throw new Error(`a duplicate while waiting for ${report()}`)
      return has('culexSub', p.culexSub) && has('remoteSub', p.remoteSub)
    },
    30_000,
    report,
  )
}

async function exchange(t: Topology): Promise<void> {
  const p = await startPair(t)
  try {
    const before = p.culex.broker.stats().messages.received
    const fromCulex = Array.from({ length: N }, (_, i) => `culex-${i}`)
    const fromMosquitto = Array.from({ length: N }, (_, i) => `mosquitto-${i}`)
    for (let i = 0; i < N; i++) {
      await p.culexPub.publishAsync(`loop/c/${i}`, fromCulex[i] as string, { qos: 1 })
      await p.remotePub.publishAsync(`loop/m/${i}`, fromMosquitto[i] as string, { qos: 1 })
    }
    await allArrive(p, t, [...fromCulex, ...fromMosquitto], `all ${2 * N} messages at both subscribers`)
    // The fence, two rounds: a marker from each side, published once everything before it arrived.
    const markers: string[] = []
    for (let round = 1; round <= 2; round++) {
      const pair = [`marker-culex-${round}`, `marker-mosquitto-${round}`]
      await p.culexPub.publishAsync(`loop/c/marker`, pair[0] as string, { qos: 1 })
      await p.remotePub.publishAsync(`loop/m/marker`, pair[1] as string, { qos: 1 })
      markers.push(...pair)
      await allArrive(p, t, pair, `the round ${round} markers at both subscribers`)
    }

    for (const [name, side, inbox] of [['Culex', 'culexSub', p.culexSub], ['Mosquitto', 'remoteSub', p.remoteSub]] as const) {
      const counts = tally(inbox.messages.map((m) => m.payload))
      let total = 0
      for (const payload of [...fromCulex, ...fromMosquitto, ...markers]) {
        const n = expectedCopies(t, side, payload)
        total += n
        assert.equal(counts.get(payload), n, `${payload} reached the ${name} subscriber ${n} time(s); duplicates: ${duplicates(inbox.messages.map((m) => m.payload))}`)
      }
      assert.equal(inbox.messages.length, total, `the ${name} subscriber got nothing else`)
    }
    // Culex's own counters: the PUBLISH packets it received on loop/ (the bridge's in-process client's included).
    const perCulexMessage = t.atCulex.culex
    const perMosquittoMessage = t.atCulex.mosquitto
    const expected = (N + 2) * perCulexMessage + (N + 2) * perMosquittoMessage
    const counts = tally(p.culexReceived)
    for (const payload of [...fromCulex, 'marker-culex-1', 'marker-culex-2']) assert.equal(counts.get(payload), perCulexMessage, `Culex received ${payload}`)
    for (const payload of [...fromMosquitto, 'marker-mosquitto-1', 'marker-mosquitto-2']) {
      assert.equal(counts.get(payload), perMosquittoMessage, `Culex received ${payload}`)
    }
    assert.equal(p.culexReceived.length, expected)
    if (t.culexSources !== undefined) {
      for (const payload of [...fromCulex, ...fromMosquitto, ...markers]) {
        assert.deepEqual(sources(p, payload).sort(), t.culexSources[origin(payload)], `where ${payload} reached Culex from`)
      }
    }
    const after = p.culex.broker.stats().messages.received
    assert.deepEqual([after[0] - before[0], after[1] - before[1], after[2] - before[2]], [0, expected, 0], 'broker.stats(): QoS 1 PUBLISH received')
  } finally {
    await p.close()
  }
}

/**
 * What each subscriber gets with two bridges on the same topics and `forwardBridged: false` on
 * Culex's (see twoBridges). By default they loop: each broker forwards over its own bridge what
 * came in over the other's, and No Local / the bridge flag only keep a connection from getting
 * back its own messages; two Mosquittos bridged this way loop the same (thousands of copies a second).
 */
const guarantee = {
  out: "each Mosquitto message once on each side, each Culex message once at Mosquitto and twice at Culex (Mosquitto's bridge echoes it once)",
  both: "each Mosquitto message once at Mosquitto and twice at Culex, each Culex message twice at Mosquitto and three times at Culex (each way brings one copy)",
}

describe('a bridge in each direction between Culex and Mosquitto, on the same topics', { skip: mosquitto.skip, timeout: 60_000 }, () => {
  for (const direction of ['out', 'both'] as const) {
    for (const protocolVersion of [4, 5] as const) {
      const how = protocolVersion === 4 ? 'MQTT 3.1.1 with the bridge flag' : 'MQTT 5 with No Local'
      test(`loop/# ${direction} in both bridges, Culex's with forwardBridged false (${how}), Mosquitto's try_private true: no loop; ${guarantee[direction]}`, { timeout: 60_000 }, async () => {
        await exchange(twoBridges(direction, protocolVersion, true, false))
      })
    }
  }

  test('with the loop protection defeated (no bridge flag either way, both): the detector sees the loop, and the bridges are closed at once', { timeout: 60_000 }, async () => {
    const p = await startPair(twoBridges('both', 4, false))
    try {
      await p.culexPub.publishAsync('loop/c/0', 'bounce', { qos: 1 })
      // A loop: the message comes back to Culex again and again. Bounded: stopped after a few rounds.
      await p.waiters.until(() => sources(p, 'bounce').length >= 6, 20_000, () => `the loop; Culex received ${JSON.stringify(p.culexReceived)}`)
      await p.handle?.close()
      await p.remote.stop()
      const from = sources(p, 'bounce')
      assert.equal(from[0], 'culex-pub')
      assert.ok(from.includes('mosquitto-bridge') && from.includes('bridge:loop'), `it came back both ways: ${JSON.stringify(from)}`)
      assert.ok(p.culexSub.withPayload('bounce').length > 1, `the Culex subscriber got it more than once: ${p.culexSub.summary()}`)
    } finally {
      await p.close()
    }
  })
})

describe('a bridge in each direction between Culex and Mosquitto, without a loop', { skip: mosquitto.skip, timeout: 60_000 }, () => {
  for (const protocolVersion of [4, 5] as const) {
    const how = protocolVersion === 4 ? 'MQTT 3.1.1 with the bridge flag' : 'MQTT 5 with No Local'
    test(`one Culex bridge, loop/# both (${how}): every message once on each side`, { timeout: 60_000 }, async () => {
      await exchange({ culex: { topics: [{ filter: 'loop/#', direction: 'both', qos: 1 }], protocolVersion, tryPrivate: true }, atCulex: { culex: 1, mosquitto: 1 } })
    })

    test(`one Culex bridge, loop/# in and loop/# out as two entries (${how}): every message once on each side`, { timeout: 60_000 }, async () => {
      const topics: BridgeTopic[] = [
        { filter: 'loop/#', direction: 'out', qos: 1 },
        { filter: 'loop/#', direction: 'in', qos: 1 },
      ]
      await exchange({ culex: { topics, protocolVersion, tryPrivate: true }, atCulex: { culex: 1, mosquitto: 1 } })
    })
  }

  test("one Mosquitto bridge into Culex, topic loop/# both 1, try_private true (Culex's No Local for a bridge): every message once on each side", { timeout: 60_000 }, async () => {
    await exchange({ mosquitto: { topics: ['topic loop/# both 1'], tryPrivate: true }, atCulex: { culex: 1, mosquitto: 1 } })
  })

  test("the detector sees a single echo: one Culex bridge, loop/# both, 3.1.1 without the bridge flag (Mosquitto sends Culex's messages back once)", { timeout: 60_000 }, async () => {
    const culex: CulexSide = { topics: [{ filter: 'loop/#', direction: 'both', qos: 1 }], protocolVersion: 4, tryPrivate: false }
    await assert.rejects(exchange({ culex, atCulex: { culex: 1, mosquitto: 1 } }), /"culex-0",2\]/)
  })

  test("the detector sees a single echo: one Mosquitto bridge into Culex, loop/# both, try_private false (Culex sends Mosquitto's messages back once)", { timeout: 60_000 }, async () => {
    await assert.rejects(exchange({ mosquitto: { topics: ['topic loop/# both 1'], tryPrivate: false }, atCulex: { culex: 1, mosquitto: 1 } }), /"mosquitto-0",2\]/)
  })

  for (const protocolVersion of [4, 5] as const) {
    test(`two bridges, one each way, on topics that do not overlap (Culex's MQTT ${protocolVersion === 4 ? '3.1.1' : '5'}): every message once on each side`, { timeout: 60_000 }, async () => {
      await exchange({
        culex: { topics: [{ filter: 'loop/c/#', direction: 'out', qos: 1 }], protocolVersion, tryPrivate: true },
        mosquitto: { topics: ['topic loop/m/# out 1'], tryPrivate: true },
        atCulex: { culex: 1, mosquitto: 1 },
      })
    })
  }
})
