/**
 * Incoming bridges: a CONNECT with the bridge bit on the protocol level (0x84 "MQTT", 0x83
 * "MQIsdp", as Mosquitto's `try_private` sends) is served as 3.1.1/3.1 with No Local and Retain As
 * Published on its subscriptions. First with raw bytes, then with a real Mosquitto bridging to Culex.
 */
import assert from 'node:assert/strict'
import { isOwnBridgeState } from '../../src/protocol/topics.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import type { Client } from '../../src/index.js'
import { expectRefused, fence, findMosquitto, freePort, lp, skipWithout, rawConnect, startBroker, Waiters, withBroker, type RawMqtt, type TestBroker } from '../helpers/index.js'

/** A bridge's CONNECT: clean session, keep alive 0, the given protocol name and level. */
function bridgeConnect(clientId: string, level = 0x84, name = 'MQTT'): Buffer {
  return rawConnect({ name, level, flags: 0x02, payload: [lp(clientId)] })
}

/** Opens a raw connection, sends a bridge CONNECT and asserts CONNACK 0. */
async function connectBridge(b: TestBroker, clientId: string, level = 0x84, name = 'MQTT'): Promise<RawMqtt> {
  const raw = await b.raw(level === 0x83 ? 3 : 4)
  raw.write(bridgeConnect(clientId, level, name))
  const connack = await raw.next('connack')
  assert.equal(connack.returnCode, 0, 'CONNACK return code')
  return raw
}

describe('bridge CONNECT (raw bytes)', { timeout: 20_000 }, () => {
  test('level 0x84 "MQTT" is accepted; its subscription to # gets others\' messages but not its own', async () => {
    await withBroker({}, async (b) => {
      const bridge = await connectBridge(b, 'bridge-1')
      await bridge.subscribe('#', 1)
      const client = b.broker.getClient('bridge-1')
      assert.equal(client?.protocolVersion, 4, 'served as 3.1.1')
      const subs = b.broker.getSubscriptions('bridge-1')
      assert.deepEqual(subs?.map((s) => [s.topicFilter, s.noLocal, s.retainAsPublished]), [['#', true, true]])

      bridge.publish('loop/own', 'own', 0)
      // The broker has handled (and routed) the bridge's PUBLISH.
      await bridge.ping()
      const { raw: other } = await b.rawConnect({ clientId: 'other' }, 4)
      other.publish('loop/theirs', 'theirs', 1, 1)
      await other.take('puback')
      await fence(b, 'loop/fence', bridge)
      assert.deepEqual(bridge.publishes().map((p) => p.payload.toString()), ['theirs', 'fence'], 'no echo of its own message')

      // A plain 3.1.1 client gets its own messages back: what the bridge is spared is the bridge flag's doing.
      const { raw: plain } = await b.rawConnect({ clientId: 'plain' }, 4)
      await plain.subscribe('#', 1)
      plain.publish('loop/mine', 'mine', 0)
      await plain.takePublish('mine')
    })
  })

  test('a retained message published by another client reaches the bridge live with RETAIN 1 (retain as published)', async () => {
    await withBroker({}, async (b) => {
      const bridge = await connectBridge(b, 'bridge-r')
      await bridge.subscribe('keep/#', 1)
      const { raw: plain } = await b.rawConnect({ clientId: 'plain' }, 4)
      await plain.subscribe('keep/#', 1)
      const { raw: pub } = await b.rawConnect({ clientId: 'pub' }, 4)
      pub.publish('keep/x', 'kept', 1, { packetId: 1, retain: true })
      await pub.take('puback')
      const toBridge = await bridge.takePublish('kept')
      assert.equal(toBridge.retain, true, 'the bridge gets RETAIN as published')
      const toPlain = await plain.takePublish('kept')
      assert.equal(toPlain.retain, false, 'a plain 3.1.1 subscriber gets RETAIN 0 on live delivery [MQTT-3.3.1-9]')
    })
  })

  test('level 0x83 "MQIsdp" is accepted as a 3.1 bridge', async () => {
    await withBroker({}, async (b) => {
      const bridge = await connectBridge(b, 'bridge-31', 0x83, 'MQIsdp')
      await bridge.subscribe('x/#', 1)
      assert.equal(b.broker.getClient('bridge-31')?.protocolVersion, 3)
      const subs = b.broker.getSubscriptions('bridge-31')
      assert.deepEqual(subs?.map((s) => [s.noLocal, s.retainAsPublished]), [[true, true]])
      bridge.publish('x/own', 'own', 0)
      await bridge.ping()
      await fence(b, 'x/fence', bridge)
      assert.deepEqual(bridge.publishes().map((p) => p.payload.toString()), ['fence'])
    })
  })

  test('other levels with the top bit are refused with CONNACK 1: 0x85 "MQTT", 0x83 "MQTT", 0x84 "MQIsdp"', async () => {
    await withBroker({}, async (b) => {
      for (const [level, name] of [[0x85, 'MQTT'], [0x83, 'MQTT'], [0x84, 'MQIsdp']] as const) {
        const raw = await b.raw(4)
        await expectRefused(raw, bridgeConnect(`refused-${level}`, level, name), 1)
      }
      assert.equal(b.broker.stats().connects['1'], 3)
    })
  })
})

/** A program's output, line by line, with a way to wait for a line. */
class Lines {
  readonly lines: string[] = []
  private partial = ''
  private readonly waiters = new Waiters()

  constructor(child: ChildProcess) {
    const take = (d: Buffer): void => {
      const text = this.partial + d.toString()
      const parts = text.split('\n')
      this.partial = parts.pop() ?? ''
      this.lines.push(...parts)
      this.waiters.notify()
    }
    child.stdout?.on('data', take)
    child.stderr?.on('data', take)
  }

  count(line: string): number {
    return this.lines.filter((l) => l === line).length
  }

  waitFor(predicate: (line: string) => boolean, what: string, ms = 10_000): Promise<void> {
    return this.waiters.until(() => this.lines.some(predicate), ms, () => `${what}; output so far:\n${this.lines.join('\n')}`)
  }
}

/** Starts a program; `stop` ends it (SIGTERM, then SIGKILL) and waits for its exit. */
function run(program: string, args: string[]): { child: ChildProcess; out: Lines; stop(): Promise<void> } {
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const out = new Lines(child)
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.once('error', () => {})
  return {
    child,
    out,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGTERM')
      const kill = setTimeout(() => child.kill('SIGKILL'), 2_000)
      await exited
      clearTimeout(kill)
    },
  }
}

/**
 * Waits until Mosquitto's bridge has connected to Culex as `clientId` and subscribed to `filter`;
 * fails at once if Culex refuses its CONNECT.
 */
function bridgeReady(b: TestBroker, clientId: string, filter: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    let connected: Client | undefined
    const timer = setTimeout(() => reject(new Error(`the bridge ${clientId} did not connect and subscribe within 10 s`)), 10_000)
    b.broker.on('connectRefused', (r) => {
      if (r.clientId !== clientId) return
      clearTimeout(timer)
      reject(new Error(`Culex refused the bridge's CONNECT: CONNACK ${r.reasonCode} (${r.reason})`))
    })
    b.broker.on('clientConnect', (c) => {
      if (c.id === clientId) connected = c
    })
    b.broker.on('subscribe', (subs, c) => {
      if (c.id !== clientId || connected === undefined || !subs.some((s) => s.topicFilter === filter)) return
      clearTimeout(timer)
      resolve(connected)
    })
  })
}

/** A Mosquitto configuration with a bridge to Culex. */
function bridgeConfig(dir: string, port: number, culexPort: number, extra: string[] = []): string {
  const conf = join(dir, 'mosquitto.conf')
  const lines = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'log_type all',
    'connection culex',
    `address 127.0.0.1:${culexPort}`,
    'topic bridged/# both 1',
    'cleansession true',
    ...extra,
  ]
  writeFileSync(conf, lines.join('\n') + '\n')
  return conf
}

const mosquitto = findMosquitto()
const subSkip = mosquitto.skip ?? skipWithout('mosquitto_sub') ?? skipWithout('mosquitto_pub')
/** Mosquitto's default bridge client identifier: `<hostname>.<connection name>`. */
const BRIDGE_ID = `${hostname()}.culex`

describe('a real Mosquitto bridging to Culex', { skip: subSkip, timeout: 20_000 }, () => {
  test('with its default notifications (a will on $SYS/broker/connection/<id>/state), the bridge is accepted', async () => {
    const b = await startBroker()
    const dir = mkdtempSync(join(tmpdir(), 'culex-bridge-'))
    const ready = bridgeReady(b, BRIDGE_ID, 'bridged/#')
    const broker = run(mosquitto.path as string, ['-c', bridgeConfig(dir, await freePort(), b.port)])
    try {
      const client = await ready
      assert.equal((client as Client & { bridge?: boolean }).bridge, true)
    } finally {
      await broker.stop()
      await b.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('messages cross both ways exactly once, with no loop (notifications off)', async () => {
    const b = await startBroker()
    const dir = mkdtempSync(join(tmpdir(), 'culex-bridge-'))
    const mport = await freePort()
    const ready = bridgeReady(b, BRIDGE_ID, 'bridged/#')
    const broker = run(mosquitto.path as string, ['-c', bridgeConfig(dir, mport, b.port, ['notifications false'])])
    let sub: ReturnType<typeof run> | undefined
    try {
      const client = await ready
      // Not part of the Client interface: only the runtime object says it is a bridge.
      assert.equal((client as Client & { bridge?: boolean }).bridge, true, 'the connection is flagged as a bridge')
      assert.equal(client.protocolVersion, 4)
      const subs = b.broker.getSubscriptions(BRIDGE_ID)
      assert.deepEqual(subs?.map((s) => [s.topicFilter, s.qos, s.noLocal, s.retainAsPublished]), [['bridged/#', 1, true, true]])

      // A subscriber on each side.
      // mosquitto_sub flushes each message it prints, but not its debug lines: Mosquitto's log says when it is subscribed.
      sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(mport), '-i', 'culex-test-sub', '-t', 'bridged/#', '-q', '1', '-v'])
      await broker.out.waitFor((l) => l.endsWith('Sending SUBACK to culex-test-sub'), 'mosquitto_sub subscribed')
      const culexSub = await b.connectRecorded({ clientId: 'culex-sub' })
      await culexSub.client.subscribeAsync('bridged/#', { qos: 1 })

      // Culex -> Mosquitto.
      await b.broker.publish({ topic: 'bridged/a', payload: 'from-culex', qos: 1 })
      await sub.out.waitFor((l) => l === 'bridged/a from-culex', 'from-culex at mosquitto_sub')

      // Mosquitto -> Culex.
      const publish = async (topic: string, payload: string): Promise<void> => {
        const pub = run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mport), '-t', topic, '-m', payload, '-q', '1'])
        await new Promise<void>((resolve) => pub.child.once('exit', () => resolve()))
        assert.equal(pub.child.exitCode, 0, pub.out.lines.join('\n'))
      }
      await publish('bridged/b', 'from-mosquitto')
      await culexSub.inbox.waitFor('from-mosquitto')

      // Fences: a marker from Mosquitto reaching Culex comes after anything Mosquitto forwarded
      // before it (an echo of from-culex would be there); a marker from Culex reaching mosquitto_sub
      // comes after anything Culex sent the bridge before it (an echo of from-mosquitto).
      await publish('bridged/m', 'marker-1')
      await culexSub.inbox.waitFor('marker-1')
      await b.broker.publish({ topic: 'bridged/m', payload: 'marker-2', qos: 1 })
      await sub.out.waitFor((l) => l === 'bridged/m marker-2', 'marker-2 at mosquitto_sub')

      assert.equal(sub.out.count('bridged/a from-culex'), 1, 'from-culex reached mosquitto_sub once')
      assert.equal(sub.out.count('bridged/b from-mosquitto'), 1, 'from-mosquitto reached mosquitto_sub once (no echo from Culex)')
      assert.equal(culexSub.inbox.withPayload('from-mosquitto').length, 1, 'from-mosquitto reached the Culex subscriber once')
      assert.equal(culexSub.inbox.withPayload('from-culex').length, 1, 'from-culex came back to Culex from nowhere')
    } finally {
      await sub?.stop()
      await broker.stop()
      await b.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

test('a client may write only its own bridge state under $SYS, and only with a client id that is one topic level', () => {
  assert.equal(isOwnBridgeState('$SYS/broker/connection/vm.culex/state', 'vm.culex'), true)
  assert.equal(isOwnBridgeState('$SYS/broker/connection/other/state', 'vm.culex'), false)
  assert.equal(isOwnBridgeState('$SYS/broker/connection/a/b/state', 'a/b'), false, "a '/' would reach into other levels")
  assert.equal(isOwnBridgeState('$SYS/broker/connection/+/state', '+'), false)
  assert.equal(isOwnBridgeState('$SYS/broker/uptime', 'x'), false)
})
