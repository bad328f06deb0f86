/**
 * The crash tests' harness: real broker processes (the CLI, `node --import tsx src/cli/main.ts`)
 * on a real store (an SQLite file, or a test `redis-server`), killed with a real SIGKILL, and raw
 * MQTT clients that see every packet as it arrives, so a kill can follow the N-th acknowledgement
 * at once (in the same 'data' callback), not some time later.
 *
 * - Randomness comes from one seed, printed by every test (`crash seed ...`); set
 *   CULEX_CRASH_SEED to replay a run. Each test draws from its own generator, derived from the seed
 *   and its name, so one test can be replayed alone (`--test-name-pattern`).
 * - CULEX_CRASH_TRIALS sets how many kill points each test tries (default 5).
 * - Trials of one test share one store and chain: the broker started after trial n's kill checks
 *   trial n and then runs trial n+1 (each trial under its own client identifiers and topics), so a
 *   store is also checked after several crashes, and a test costs trials + 1 broker starts.
 * - Nothing sleeps: waits are for output lines, packets, process exits; each has a deadline that
 *   only guards against a hang.
 */
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Readable } from 'node:stream'
import type { TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import { PacketDecoder } from '../../src/protocol/decoder.js'
import { encodePacket } from '../../src/protocol/encoder.js'
import type { ConnackPacket, ConnectPacket, Packet, Properties, ProtocolVersion, PublishPacket } from '../../src/protocol/packets.js'
import { describePacket } from '../helpers/packets.js'
import { skipRedis, startRedis, type RedisServer } from '../helpers/redis-server.js'
import { Waiters } from '../helpers/wait.js'

export const root = fileURLToPath(new URL('../..', import.meta.url))

/** How long a broker may take to start (tsx compiles on a cold cache; this box has 2 loaded cores). */
const START_MS = 60_000
/** How long any one wait in a crash test may take before it fails: a guard, never a measure. */
export const WAIT_MS = 30_000

// ---------------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------------

function parseSeed(): number {
  const given = process.env.CULEX_CRASH_SEED
  if (given !== undefined && given !== '') {
    const n = Number(given)
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`CULEX_CRASH_SEED must be an integer from 0 to 4294967295, got ${JSON.stringify(given)}`)
    return n
  }
  return (Math.random() * 0x100000000) >>> 0
}

/** The seed of this run (CULEX_CRASH_SEED, or a random one). */
export const SEED = parseSeed()

/** Kill points per test (CULEX_CRASH_TRIALS, default 5). */
export const TRIALS = (() => {
  const given = Number(process.env.CULEX_CRASH_TRIALS ?? '5')
  if (!Number.isInteger(given) || given < 1) throw new Error(`CULEX_CRASH_TRIALS must be a positive integer, got ${process.env.CULEX_CRASH_TRIALS}`)
  return given
})()

function hash32(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
  return h >>> 0
}

/** A small seeded generator (mulberry32). */
export class Rng {
  private state: number

  constructor(seed: number) {
    this.state = seed >>> 0
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** An integer from `lo` to `hi`, both included. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }

  bool(p = 0.5): boolean {
    return this.next() < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)] as T
  }

  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i)
      ;[items[i], items[j]] = [items[j] as T, items[i] as T]
    }
    return items
  }
}

/** The generator of one test, from the run's seed and the test's name; logs how to replay it. */
export function rngFor(t: TestContext): Rng {
  const name = t.fullName ?? t.name
  // A regular expression matching the name, safe in double quotes: '.' for anything special.
  const pattern = t.name.replace(/[^A-Za-z0-9 ,:-]/g, '.')
  // Under `node --test` each file runs in a process of its own, started with the file's path.
  const script = process.argv[1] ?? ''
  const file = script.endsWith('.test.ts') ? path.relative(root, script) : 'test/crash/<file>'
  t.diagnostic(`crash seed ${SEED} (replay: CULEX_CRASH_SEED=${SEED} CULEX_CRASH_TRIALS=${TRIALS} node --import tsx --test --test-name-pattern="${pattern}" ${file})`)
  return new Rng(hash32(`${SEED}/${name}`))
}

// ---------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------

export type Backend = 'sqlite' | 'redis'
export const BACKENDS: readonly Backend[] = ['sqlite', 'redis']

/** Why a backend's tests are skipped, or false. Redis: skipped without redis-server, a failure under CI=true. */
export function skipBackend(backend: Backend): string | false {
  if (backend === 'redis') return skipRedis() ?? false
  return false
}

/** A store that outlives the brokers of one test. */
export interface Store {
  readonly backend: Backend
  /** The value of `--persistence`. */
  readonly persistence: string
  /** SQLite: the database file. */
  readonly file?: string
  /** Redis: the server (to stop, kill and restart). */
  readonly redis?: RedisServer
  dispose(): Promise<void>
}

/** A fresh, empty store for one test; disposed after it. */
export async function openStore(backend: Backend, t: TestContext): Promise<Store> {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(path.join(tmpdir(), 'culex-crash-'))
    const file = path.join(dir, 'culex.db')
    const store: Store = {
      backend,
      persistence: `sqlite:${file}`,
      file,
      dispose: async () => {
        // A test that failed while the file was immutable must not leave it so.
        spawnSync('chattr', ['-i', file, `${file}-wal`, `${file}-journal`], { stdio: 'ignore' })
        rmSync(dir, { recursive: true, force: true })
      },
    }
    t.after(() => store.dispose())
    return store
  }
  const redis = await startRedis()
  const store: Store = { backend, persistence: redis.url, redis, dispose: () => redis.dispose() }
  t.after(() => store.dispose())
  return store
}

// ---------------------------------------------------------------------------------------------
// Broker processes
// ---------------------------------------------------------------------------------------------

/** Every broker still running when the test process exits is killed, so none outlives a failed run. */
const running = new Set<ChildProcessByStdio<null, Readable, Readable>>()
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** Limits every crash broker runs with: room for the floods in an offline queue. */
const LIMIT_ARGS = ['--max-queued', '1000000', '--max-inflight', '100']

/** One `culex` process. */
export class BrokerProcess {
  /** The port it listens on (127.0.0.1). */
  port = 0
  /** stdout and stderr as they interleaved (the last 256 KiB). */
  log = ''
  exitCode: number | null | undefined
  exitSignal: NodeJS.Signals | null = null
  private readonly waiters = new Waiters()
  readonly child: ChildProcessByStdio<null, Readable, Readable>

  constructor(readonly args: string[]) {
    this.child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Commit failures and recoveries in the log, for the failure messages.
      env: { ...process.env, DEBUG: 'culex:persistence,culex:error', DEBUG_COLORS: '0' },
    })
    running.add(this.child)
    const keep = (chunk: Buffer): void => {
      this.log = (this.log + chunk.toString()).slice(-256 * 1024)
      this.waiters.notify()
    }
    this.child.stdout.on('data', keep)
    this.child.stderr.on('data', keep)
    // 'close': the process is gone and its output read to the end.
    this.child.once('close', (code, signal) => {
      running.delete(this.child)
      this.exitCode = code
      this.exitSignal = signal
      this.waiters.notify()
    })
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  get alive(): boolean {
    return this.exitCode === undefined
  }

  /** Waits for a line of output matching `pattern`; fails at once if the broker exits first. */
  async waitFor(pattern: RegExp, ms = WAIT_MS): Promise<RegExpMatchArray> {
    await this.waiters.until(
      () => pattern.test(this.log),
      ms,
      () => `broker output matching ${pattern}; got:\n${this.log}`,
      () => this.exitCode !== undefined && !pattern.test(this.log),
    )
    return this.log.match(pattern) as RegExpMatchArray
  }

  /** SIGKILL now, synchronously: for a packet callback that must kill at that very packet. */
  killNow(): void {
    if (this.alive && this.child.signalCode === null) this.child.kill('SIGKILL')
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    this.killNow()
    await this.waiters.until(() => this.exitCode !== undefined, WAIT_MS, 'the broker to exit after SIGKILL')
  }

  /** Whether it died of a SIGKILL (ours), not of a crash of its own before it. */
  killedBySigkill(): boolean {
    return this.exitCode === null && this.exitSignal === 'SIGKILL'
  }
}

/**
 * Starts `culex --port 0 --host 127.0.0.1 --persistence <store>` and waits for its
 * `culex: listening on mqtt://127.0.0.1:PORT` line. The broker is killed when the test ends.
 */
export async function startBroker(store: Store, t: TestContext, extra: string[] = []): Promise<BrokerProcess> {
  const broker = new BrokerProcess(['--port', '0', '--host', '127.0.0.1', '--persistence', store.persistence, ...LIMIT_ARGS, ...extra])
  t.after(() => broker.kill())
  try {
    const match = await broker.waitFor(/^culex: listening on mqtt:\/\/127\.0\.0\.1:(\d+)\b/m, START_MS)
    broker.port = Number(match[1])
  } catch (error) {
    await broker.kill()
    throw error
  }
  return broker
}

// ---------------------------------------------------------------------------------------------
// A raw MQTT client
// ---------------------------------------------------------------------------------------------

export interface ConnectOptions {
  clientId: string
  /** 4 (3.1.1) or 5. Default 4. */
  version?: 4 | 5
  /** Default true. */
  clean?: boolean
  /** MQTT 5 Session Expiry Interval. Default 0. */
  sessionExpiry?: number
}

/**
 * A raw MQTT client over TCP with the broker's own codec. Listeners (`on`) see each packet
 * synchronously as it is decoded, in order; nothing acknowledges anything unless a test does.
 */
export class Peer {
  closed = false
  /** Packets received, when `record` is on. */
  readonly packets: Packet[] = []
  record = false
  private readonly listeners: Array<(p: Packet) => void> = []
  private readonly waiters = new Waiters()
  private readonly decoder: PacketDecoder
  private decodeError: Error | undefined

  private constructor(
    readonly socket: net.Socket,
    readonly version: ProtocolVersion,
  ) {
    this.decoder = new PacketDecoder((p) => {
      if (this.record) this.packets.push(p)
      for (const f of this.listeners) f(p)
    })
    this.decoder.protocolVersion = version
    socket.on('data', (chunk: Buffer) => {
      if (this.decodeError === undefined) {
        try {
          this.decoder.push(chunk)
        } catch (error) {
          this.decodeError = error as Error
        }
      }
      this.waiters.notify()
    })
    socket.on('close', () => {
      this.closed = true
      this.waiters.notify()
    })
    socket.on('error', () => {})
  }

  static tcp(port: number, version: ProtocolVersion): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.off('error', reject)
        socket.setNoDelay(true)
        resolve(new Peer(socket, version))
      })
      socket.once('error', reject)
    })
  }

  /**
   * Connects and waits for the CONNACK, which must accept. `setup` runs before CONNECT: what the
   * broker sends right behind the CONNACK (re-sent and queued messages) may come in its TCP
   * segment, so whoever must see it listens from the start.
   */
  static async connect(port: number, options: ConnectOptions, setup?: (peer: Peer) => void): Promise<{ peer: Peer; connack: ConnackPacket }> {
    const version = options.version ?? 4
    const peer = await Peer.tcp(port, version)
    let connack: ConnackPacket | undefined
    peer.on((p) => {
      if (p.type === 'connack' && connack === undefined) connack = p
    })
    setup?.(peer)
    const packet: ConnectPacket = {
      type: 'connect',
      protocolName: 'MQTT',
      protocolVersion: version,
      cleanSession: options.clean ?? true,
      keepAlive: 0,
      clientId: options.clientId,
    }
    if (version === 5 && options.sessionExpiry !== undefined) packet.properties = { sessionExpiryInterval: options.sessionExpiry }
    peer.send(packet)
    await peer.until(() => connack !== undefined || peer.closed, `CONNACK for ${options.clientId}`)
    if (connack === undefined) throw new Error(`the broker closed the connection of ${options.clientId} before CONNACK`)
    if (connack.returnCode !== 0) throw new Error(`CONNACK for ${options.clientId} refused: 0x${connack.returnCode.toString(16)}`)
    return { peer, connack }
  }

  on(f: (p: Packet) => void): void {
    this.listeners.push(f)
  }

  send(packet: Packet): void {
    if (this.closed || this.socket.destroyed) return
    this.socket.write(encodePacket(packet, this.version))
  }

  publish(topic: string, payload: string | Buffer, qos: 0 | 1 | 2, packetId: number, options: { retain?: boolean; dup?: boolean; properties?: Properties } = {}): void {
    const p: PublishPacket = {
      type: 'publish',
      topic,
      payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
      qos,
      retain: options.retain ?? false,
      dup: options.dup ?? false,
      packetId: qos === 0 ? 0 : packetId,
    }
    if (options.properties !== undefined) p.properties = options.properties
    this.send(p)
  }

  /** Waits until `predicate` holds, re-checked on every chunk received and on close. */
  async until(predicate: () => boolean, what: string | (() => string), ms = WAIT_MS): Promise<void> {
    await this.waiters.until(
      () => {
        if (this.decodeError !== undefined) throw this.decodeError
        return predicate()
      },
      ms,
      what,
    )
  }

  /** The PINGREQ fence: once PINGRESP is back, the broker has handled all this client sent before, and sent what it answered. */
  async ping(): Promise<void> {
    let got = false
    const f = (p: Packet): void => {
      if (p.type === 'pingresp') got = true
    }
    this.listeners.push(f)
    this.send({ type: 'pingreq' })
    try {
      await this.until(() => got || this.closed, 'PINGRESP')
      if (!got) throw new Error('the connection closed while waiting for PINGRESP')
    } finally {
      this.listeners.splice(this.listeners.indexOf(f), 1)
    }
  }

  /** DISCONNECT, then waits for the broker to close the connection. */
  async disconnect(): Promise<void> {
    this.send({ type: 'disconnect' })
    this.socket.end()
    await this.until(() => this.closed, 'the connection to close after DISCONNECT')
  }

  destroy(): void {
    this.socket.destroy()
  }

  async waitClosed(what = 'the connection to close'): Promise<void> {
    await this.until(() => this.closed, what)
  }
}

export { describePacket }

/**
 * Subscribes and waits for the SUBACK, which must grant every filter (MQTT 5: reason codes 0-2).
 * Returns the granted QoS of each.
 */
export async function subscribe(peer: Peer, packetId: number, subscriptions: Array<{ topicFilter: string; qos: 0 | 1 | 2 }>): Promise<number[]> {
  let codes: number[] | undefined
  const f = (p: Packet): void => {
    if (p.type === 'suback' && p.packetId === packetId) codes = p.reasonCodes
  }
  peer.on(f)
  peer.send({ type: 'subscribe', packetId, subscriptions })
  await peer.until(() => codes !== undefined || peer.closed, `SUBACK ${packetId}`)
  if (codes === undefined) throw new Error(`the connection closed while waiting for SUBACK ${packetId}`)
  const refused = codes.filter((c) => c >= 0x80)
  if (refused.length > 0) throw new Error(`SUBACK ${packetId} refused: ${codes.map((c) => `0x${c.toString(16)}`).join(',')}`)
  return codes
}

/**
 * A QoS 1/2 subscriber that acknowledges everything (QoS 2: delivery on PUBLISH, the packet
 * identifier held until PUBREL, as a receiver must, so a re-sent PUBLISH of a held identifier is
 * not delivered twice). Counts each payload it delivered.
 */
export class AckingSubscriber {
  /** Payload -> times delivered to the "application". */
  readonly delivered = new Map<string, number>()
  /** Every PUBLISH in arrival order (payload, qos, dup), for the failure messages. */
  readonly log: Array<{ payload: string; qos: number; dup: boolean; packetId: number }> = []
  private readonly held = new Set<number>()

  constructor(readonly peer: Peer) {
    peer.on((p) => this.handle(p))
  }

  private handle(p: Packet): void {
    if (p.type === 'publish') {
      const payload = p.payload.toString()
      this.log.push({ payload, qos: p.qos, dup: p.dup, packetId: p.packetId })
      if (p.qos === 2) {
        if (!this.held.has(p.packetId)) {
          this.held.add(p.packetId)
          this.count(payload)
        }
        this.peer.send({ type: 'pubrec', packetId: p.packetId })
      } else {
        this.count(payload)
        if (p.qos === 1) this.peer.send({ type: 'puback', packetId: p.packetId })
      }
    } else if (p.type === 'pubrel') {
      this.held.delete(p.packetId)
      this.peer.send({ type: 'pubcomp', packetId: p.packetId })
    }
  }

  private count(payload: string): void {
    this.delivered.set(payload, (this.delivered.get(payload) ?? 0) + 1)
  }

  /** Waits until `payload` has been delivered. */
  async waitFor(payload: string, ms = WAIT_MS): Promise<void> {
    await this.peer.until(
      () => this.delivered.has(payload) || this.peer.closed,
      () => `${payload} to be delivered (${this.delivered.size} distinct so far)`,
      ms,
    )
    if (!this.delivered.has(payload)) throw new Error(`the subscriber's connection closed before ${payload} arrived`)
  }
}

// ---------------------------------------------------------------------------------------------
// Store failure injection (SQLite)
// ---------------------------------------------------------------------------------------------

/**
 * How a running broker's SQLite store is made to fail, and then to work again, without touching
 * the broker:
 *
 * - `immutable`: `chattr +i` on the database and its write-ahead log. Unlike `chmod`, which is
 *   checked only when a file is opened (the broker holds both open from start, so a read-only
 *   mode changes nothing for it, and root ignores modes anyway), the immutable flag also refuses
 *   writes through descriptors already open (EPERM; Linux >= 5.3 on ext4). Needs
 *   CAP_LINUX_IMMUTABLE (root outside a container; Docker drops it) and a file system that has
 *   the flag (ext4, xfs, btrfs; not tmpfs or overlayfs).
 * - `fsize`: `prlimit --pid <broker> --fsize=0`: the broker's file-size limit drops to 0, so every
 *   write to a regular file fails with EFBIG (as on a full disk; Node ignores SIGXFSZ), pipes and
 *   sockets unaffected; raising it again restores. Works for any user on their own processes.
 */
export type SqliteFault = 'immutable' | 'fsize'

/** The fault injections that work here, probed once: a file in a temporary directory made immutable, our own limit set. */
export function sqliteFaults(): SqliteFault[] {
  const faults: SqliteFault[] = []
  const dir = mkdtempSync(path.join(tmpdir(), 'culex-crash-probe-'))
  try {
    const file = path.join(dir, 'probe')
    writeFileSync(file, 'x')
    if (spawnSync('chattr', ['+i', file], { stdio: 'ignore' }).status === 0) {
      faults.push('immutable')
      spawnSync('chattr', ['-i', file], { stdio: 'ignore' })
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const probe = spawnSync('prlimit', ['--pid', String(process.pid), '--fsize'], { encoding: 'utf8' })
  if (probe.status === 0) faults.push('fsize')
  return faults
}

function run(command: string, args: string[]): void {
  const r = spawnSync(command, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.status}): ${r.stderr || r.error?.message}`)
}

/** Makes the store of `broker` fail; returns what restores it. */
export function breakSqlite(fault: SqliteFault, file: string, broker: BrokerProcess): () => void {
  if (fault === 'immutable') {
    const files = [file, `${file}-wal`]
    run('chattr', ['+i', ...files])
    return () => run('chattr', ['-i', ...files])
  }
  const pid = String(broker.pid)
  run('prlimit', ['--pid', pid, '--fsize=0:unlimited'])
  return () => {
    // The broker may be dead already (a failed test): nothing to restore then.
    if (broker.alive) run('prlimit', ['--pid', pid, '--fsize=unlimited:unlimited'])
  }
}

// ---------------------------------------------------------------------------------------------
// Assertion helpers
// ---------------------------------------------------------------------------------------------

/** At most `n` items, for failure messages. */
export function some<T>(items: Iterable<T>, n = 20): string {
  const all = [...items]
  return `${all.slice(0, n).join(', ')}${all.length > n ? ` ... (${all.length} in all)` : ''}`
}

/** The broker's log tail, for failure messages. */
export function tail(broker: BrokerProcess, chars = 4000): string {
  return broker.log.slice(-chars)
}

// ---------------------------------------------------------------------------------------------
// The trial loop
// ---------------------------------------------------------------------------------------------

/** One crash test: what a trial does up to the kill, and what is checked after the restart. */
export interface CrashScenario<T> {
  /** Runs trial `n` on a live broker and SIGKILLs it (and waits for it to be gone). */
  crash(broker: BrokerProcess, n: number, rng: Rng, store: Store): Promise<T>
  /** Checks trial `trial` on the broker restarted after its kill. */
  verify(t: TestContext, broker: BrokerProcess, trial: T, store: Store): Promise<void>
}

/**
 * Runs TRIALS trials on one fresh store of `backend`: start, trial 1, kill, restart, check trial
 * 1, trial 2, kill, restart, ... check the last; then kills the last broker. Logs the broker
 * start times (most of a crash test's time on a slow machine).
 */
export async function runTrials<T>(t: TestContext, backend: Backend, scenario: CrashScenario<T>): Promise<void> {
  const rng = rngFor(t)
  const store = await openStore(backend, t)
  const starts: number[] = []
  const start = async (): Promise<BrokerProcess> => {
    const t0 = performance.now()
    const broker = await startBroker(store, t)
    starts.push(Math.round(performance.now() - t0))
    return broker
  }
  let broker = await start()
  let previous: { trial: T } | undefined
  for (let n = 1; n <= TRIALS; n++) {
    if (previous !== undefined) await scenario.verify(t, broker, previous.trial, store)
    previous = { trial: await scenario.crash(broker, n, rng, store) }
    if (broker.alive) throw new Error(`trial ${n} did not kill its broker`)
    broker = await start()
  }
  if (previous !== undefined) await scenario.verify(t, broker, previous.trial, store)
  await broker.kill()
  t.diagnostic(`${starts.length} broker starts: ${starts.join(', ')} ms`)
}
