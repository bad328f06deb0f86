// Crash test 6: the store fails in the middle of a QoS 1 flood to an offline persistent subscriber,
// and comes back.
//
// - SQLite: the running broker's database is made unwritable (see `SqliteFault` in the harness for
//   why `chmod` cannot do it, and what is used instead: `chattr +i` on the file and its log, or the
//   broker's file-size limit dropped to 0 with `prlimit`, whichever this machine allows; trials
//   alternate when both work).
// - Redis: the test's redis-server is stopped (SIGTERM) or killed (SIGKILL), then restarted.
//
// While it fails an MQTT 5 publisher gets PUBACK 0x80 (or is disconnected; a 3.1.1 one, every
// third trial, is disconnected), and no message published while the store is down gets PUBACK
// 0x00 before it is back; once it is back, new publishes get PUBACK 0x00 again from the same
// broker process, never restarted. The broker is then SIGKILLed at a random point and restarted:
// every message that got PUBACK 0x00, before, during or after the failure, reaches the
// subscriber, which shows nothing was acknowledged unstored.
import assert from 'node:assert/strict'
import { describe, test, type TestContext } from 'node:test'
import type { Packet } from '../../src/protocol/packets.js'
import { Waiters } from '../helpers/wait.js'
import {
  AckingSubscriber,
  type Backend,
  BACKENDS,
  breakSqlite,
  type BrokerProcess,
  Peer,
  type Rng,
  runTrials,
  skipBackend,
  some,
  sqliteFaults,
  type Store,
  subscribe,
  tail,
  WAIT_MS,
} from './harness.js'

const WINDOW = 50

/** The ways to make SQLite fail that work on this machine (probed once). */
const SQLITE_FAULTS = sqliteFaults()

function skipFor(backend: Backend): string | false {
  const skip = skipBackend(backend)
  if (skip !== false || backend !== 'sqlite' || SQLITE_FAULTS.length > 0) return skip
  const why = 'no way to make a running SQLite store fail here: neither chattr +i (CAP_LINUX_IMMUTABLE, ext4) nor prlimit --fsize works'
  if (process.env.CI === 'true') throw new Error(`${why} (required under CI=true)`)
  return why
}

/** A QoS 1 flood from a publisher that reconnects when the broker closes it. */
class Flood {
  sent = 0
  /** Payloads PUBACKed with 0x00. */
  readonly acked = new Set<string>()
  /** Payloads PUBACKed with an error code, and the code. */
  readonly refused = new Map<string, number>()
  /** Times the broker closed the publisher's connection (3.1.1: how it is told the store failed). */
  disconnects = 0
  /** The first payload index sent once the store was down (SQLite: broken; Redis: its process gone). */
  brokenAt = Infinity
  /** The store is down and nothing has been done yet to bring it back. */
  down = false
  /** Payloads sent while the store was down and PUBACKed 0x00 before it came back: the store cannot have them. */
  readonly ackedWhileDown: string[] = []
  /** The first payload index sent after the store came back. */
  restoredAt = Infinity
  /** 0x00 PUBACKs for payloads sent after the store came back. */
  recovered = 0
  stopped = false
  peer: Peer | undefined
  onAck: (ok: boolean) => void = () => {}
  readonly waiters = new Waiters()
  private outstanding = new Map<number, { payload: string; index: number }>()
  private nextId = 0

  constructor(
    readonly n: number,
    readonly topic: string,
    readonly version: 4 | 5,
  ) {}

  async connect(port: number): Promise<void> {
    this.outstanding = new Map()
    const { peer } = await Peer.connect(port, { clientId: `fail-pub-${this.n}`, version: this.version }, (p) => p.on((packet) => this.handle(packet)))
    this.peer = peer
    peer.socket.on('close', () => this.waiters.notify())
    peer.socket.cork()
    for (let i = 0; i < WINDOW && !this.stopped; i++) this.sendNext()
    peer.socket.uncork()
  }

  private sendNext(): void {
    const peer = this.peer
    if (peer === undefined || peer.closed) return
    const index = this.sent++
    const payload = `fail:${this.n}:${index}`
    const packetId = (this.nextId++ % 65535) + 1
    this.outstanding.set(packetId, { payload, index })
    peer.publish(this.topic, payload, 1, packetId)
  }

  private handle(p: Packet): void {
    if (p.type === 'puback') {
      const o = this.outstanding.get(p.packetId)
      if (o !== undefined) {
        this.outstanding.delete(p.packetId)
        const code = p.reasonCode ?? 0
        if (code === 0) {
          this.acked.add(o.payload)
          if (this.down && o.index >= this.brokenAt) this.ackedWhileDown.push(o.payload)
          if (o.index >= this.restoredAt) this.recovered++
        } else this.refused.set(o.payload, code)
        this.onAck(code === 0)
        if (!this.stopped) this.sendNext()
      }
    }
    this.waiters.notify()
  }

  until(predicate: () => boolean, what: string | (() => string)): Promise<void> {
    return this.waiters.until(predicate, WAIT_MS, what)
  }
}

interface Trial {
  n: number
  version: 4 | 5
  subscriber: string
  flood: Flood
  fault: string
  breakAfter: number
  failuresBeforeRestore: number
  killAfterRecovery: number
}

async function crashTrial(broker: BrokerProcess, n: number, rng: Rng, store: Store): Promise<Trial> {
  const subscriber = `fail-sub-${n}`
  const topic = `fail/${n}`
  const sub = (await Peer.connect(broker.port, { clientId: subscriber, clean: false })).peer
  await subscribe(sub, 1, [{ topicFilter: topic, qos: 1 }])
  await sub.disconnect()

  // Mostly MQTT 5, told 0x80; every third trial 3.1.1, which cannot be told and is disconnected.
  const version: 4 | 5 = n % 3 === 0 ? 4 : 5
  const flood = new Flood(n, topic, version)
  const breakAfter = rng.int(1, 1500)
  const failuresBeforeRestore = version === 5 ? rng.int(1, 100) : rng.int(1, 3)
  const killAfterRecovery = rng.int(1, 300)
  let restore: (() => void | Promise<void>) | undefined
  let breaking: Promise<void> | undefined
  let fault: string
  let oks = 0

  if (store.backend === 'sqlite') {
    fault = SQLITE_FAULTS[(n - 1) % SQLITE_FAULTS.length] as string
    const file = store.file as string
    // Synchronously, in the callback of the breakAfter-th PUBACK.
    flood.onAck = (ok) => {
      if (ok && ++oks === breakAfter && restore === undefined) {
        restore = breakSqlite(fault as 'immutable' | 'fsize', file, broker)
        flood.brokenAt = flood.sent
        flood.down = true
      }
    }
  } else {
    const redis = store.redis
    if (redis === undefined) throw new Error('no redis server')
    fault = rng.bool() ? 'redis SIGTERM' : 'redis SIGKILL'
    flood.onAck = (ok) => {
      if (ok && ++oks === breakAfter && breaking === undefined) {
        breaking = (fault === 'redis SIGTERM' ? redis.stop() : redis.kill()).then(() => {
          flood.brokenAt = flood.sent
          flood.down = true
        })
        restore = () => redis.restart()
      }
    }
  }

  const failures = (): number => flood.refused.size + flood.disconnects
  await flood.connect(broker.port)
  // Flood until the store has failed `failuresBeforeRestore` times (PUBACK 0x80, or a disconnect).
  for (;;) {
    await flood.until(
      () => failures() >= failuresBeforeRestore || flood.peer?.closed === true || flood.ackedWhileDown.length > 0,
      () => `${failuresBeforeRestore} failures after breaking the store (${fault}) after ${breakAfter} PUBACKs; got ${oks} PUBACK 0x00, ${flood.refused.size} refused, ${flood.disconnects} disconnects\n${tail(broker)}`,
    )
    if (failures() >= failuresBeforeRestore || flood.ackedWhileDown.length > 0) break
    // Closed: the broker may disconnect a publisher whose message it could not store.
    assert.ok(broker.alive, `the broker stayed up while its store failed:\n${tail(broker)}`)
    flood.disconnects++
    await flood.connect(broker.port)
  }
  await breaking
  assert.equal(
    flood.ackedWhileDown.length,
    0,
    `PUBACK 0x00, while the store was down (${fault}), for messages published after it went down: ${some(flood.ackedWhileDown)}\n${tail(broker)}`,
  )

  // The store comes back; the same broker process acknowledges new publishes again.
  flood.down = false
  flood.restoredAt = flood.sent
  await restore?.()
  flood.onAck = (ok) => {
    if (ok && flood.recovered === killAfterRecovery) {
      flood.stopped = true
      broker.killNow()
    }
  }
  for (;;) {
    await flood.until(
      () => flood.recovered >= killAfterRecovery || flood.peer?.closed === true,
      () => `PUBACK 0x00 for messages sent after the store (${fault}) came back: ${flood.recovered} of ${killAfterRecovery}\n${tail(broker)}`,
    )
    if (flood.recovered >= killAfterRecovery) break
    assert.ok(broker.alive, `the broker stayed up while its store recovered:\n${tail(broker)}`)
    flood.disconnects++
    await flood.connect(broker.port)
  }
  await flood.until(() => flood.peer?.closed === true, 'the connection to close when the broker is killed')
  await broker.kill()
  assert.ok(broker.killedBySigkill(), `the broker died of SIGKILL:\n${tail(broker)}`)

  const codes = [...new Set(flood.refused.values())].map((c) => `0x${c.toString(16)}`)
  if (version === 5) {
    assert.ok(failures() > 0, `the MQTT 5 publisher saw the store fail (${fault}): PUBACK 0x80 or a disconnect`)
    assert.deepEqual(codes.filter((c) => c !== '0x80'), [], 'an MQTT 5 publisher is told 0x80 (Unspecified error) when the store fails')
  } else {
    assert.ok(flood.disconnects > 0, `the 3.1.1 publisher, which cannot be told, was disconnected when the store failed (${fault})`)
  }
  return { n, version, subscriber, flood, fault, breakAfter, failuresBeforeRestore, killAfterRecovery }
}

async function verifyTrial(t: TestContext, broker: BrokerProcess, trial: Trial): Promise<void> {
  const { n, flood } = trial
  const end = `fail:${n}:end`
  const { peer: pub } = await Peer.connect(broker.port, { clientId: `fail-end-${n}` })
  let endAcked = false
  pub.on((p) => {
    if (p.type === 'puback') endAcked = true
  })
  pub.publish(flood.topic, end, 1, 1)
  await pub.until(() => endAcked, 'PUBACK of the end marker')
  await pub.disconnect()

  let sub!: AckingSubscriber
  const { peer, connack } = await Peer.connect(broker.port, { clientId: trial.subscriber, clean: false }, (p) => (sub = new AckingSubscriber(p)))
  assert.equal(connack.sessionPresent, true, `the session of ${trial.subscriber} survived`)
  await sub.waitFor(end)
  await peer.disconnect()

  const missing = [...flood.acked].filter((p) => !sub.delivered.has(p))
  const refusedDelivered = [...flood.refused.keys()].filter((p) => sub.delivered.has(p)).length
  t.diagnostic(
    `trial ${n} (${trial.fault}, MQTT ${trial.version === 5 ? '5' : '3.1.1'} publisher): broken after ${trial.breakAfter} PUBACKs; ${flood.refused.size} PUBACK 0x80, ${flood.disconnects} disconnects; ` +
      `killed ${trial.killAfterRecovery} PUBACK 0x00 after recovery; ${flood.acked.size} acked of ${flood.sent} sent, all delivered after restart: ${missing.length === 0}; ` +
      `${refusedDelivered} of the 0x80 ones delivered anyway (the broker keeps retrying their commit)`,
  )
  assert.equal(missing.length, 0, `PUBACK 0x00 for messages the store did not keep (trial ${n}, ${trial.fault}; ${missing.length} of ${flood.acked.size}): ${some(missing)}\n${tail(broker)}`)
}

describe('crash: the store fails mid-flood and comes back', { concurrency: true }, () => {
  for (const backend of BACKENDS) {
    test(`nothing unstored is acknowledged, 0x80 while failing, recovery without restart (${backend})`, { skip: skipFor(backend), timeout: 180_000 }, async (t) => {
      if (backend === 'sqlite') t.diagnostic(`SQLite fault injections used here: ${SQLITE_FAULTS.join(', ')}`)
      await runTrials(t, backend, { crash: crashTrial, verify: verifyTrial })
    })
  }
})
