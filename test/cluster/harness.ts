/**
 * The cluster tests' harness: one test-owned `redis-server` (test/helpers/redis-server.ts) and
 * several `culex --cluster` processes on it (the CLI, started as test/crash/harness.ts starts its
 * brokers), with raw clients (the crash harness's `Peer`) and `mqtt` clients connected to them.
 *
 * - `Cluster.start(['n1', 'n2'])` starts Redis and the nodes (`--node-id n1` ...,
 *   `--cluster-lease-ms LEASE_MS`), each waited for on its `culex: cluster node <id> on redis://`
 *   and `culex: listening on mqtt://127.0.0.1:PORT` lines; `dispose()` ends every client,
 *   kills every node it ever started and removes Redis.
 * - `Flood` publishes a numbered run of QoS 1 or 2 messages through a window, and records which
 *   the broker acknowledged (PUBACK, or PUBREC for QoS 2, with a success code): the messages the
 *   cluster owes its subscribers.
 * - `TcpProxy` sits between one node and Redis (`startNode(id, [], proxy.url)`) so that a test
 *   can partition that node alone (`cut('reset' | 'blackhole')`) and heal it.
 * - Nothing sleeps to synchronise: waits are for packets, output lines and process exits, each
 *   with a deadline that only guards against a hang; fences are PINGREQ round trips and marker
 *   messages sent behind the others through the same path. `observeQuiet` (a bounded wait in which
 *   nothing more may happen) is used only as the last step of a test, where no fence exists.
 */
import net from 'node:net'
import mqtt, { type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt'
import type { ConnackPacket, ConnectPacket, Packet, Properties, WillMessage } from '../../src/protocol/packets.js'
import { AckingSubscriber, BrokerProcess, type ConnectOptions, Peer, some, tail, WAIT_MS } from '../crash/harness.js'
import { Inbox } from '../helpers/mqtt.js'
import { skipRedis, startRedis, type RedisServer } from '../helpers/redis-server.js'
import { realTimer, until } from '../helpers/wait.js'

export { AckingSubscriber, Peer, some, WAIT_MS }
export { subscribe } from '../crash/harness.js'
export { ping } from '../helpers/mqtt.js'
export { until } from '../helpers/wait.js'

/** Why the cluster suites are skipped (no redis-server), or undefined; throws under CI=true when it is missing. */
export function skipCluster(): string | undefined {
  return skipRedis()
}

/** `--cluster-lease-ms` of every node: short, so that takeovers after a death happen within seconds. */
export const LEASE_MS = 2000
/** How long a node may take to start (tsx compiles on a cold cache; a restart waits up to one lease). */
export const START_MS = 60_000
/** How long survivors may take to act for a dead node: "about 1-2 leases", with room for a loaded 2-core machine. */
export const TAKEOVER_MS = 5 * LEASE_MS + 10_000
/** Limits of every node: room for the floods in offline queues (as the crash tests' brokers). */
const NODE_LIMITS = ['--max-queued', '1000000', '--max-inflight', '100']

/** The command line of node `id` on the cluster at `url`. */
export function nodeArgs(url: string, id: string, extra: string[] = []): string[] {
  return ['--port', '0', '--host', '127.0.0.1', '--cluster', url, '--node-id', id, '--cluster-lease-ms', String(LEASE_MS), ...NODE_LIMITS, ...extra]
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/** A test-owned Redis and the `culex --cluster` processes on it. */
export class Cluster {
  /** The process currently serving each node id (alive or killed). */
  private readonly current = new Map<string, BrokerProcess>()
  /** Every process started, in order, for the logs. */
  private readonly started: Array<{ id: string; node: BrokerProcess }> = []
  private readonly mqttClients: MqttClient[] = []
  private readonly peers: Peer[] = []

  private constructor(readonly redis: RedisServer) {}

  /** Starts a Redis and one node per id (all at once); on failure, disposes what started. */
  static async start(ids: readonly string[]): Promise<Cluster> {
    const cluster = new Cluster(await startRedis())
    try {
      await Promise.all(ids.map((id) => cluster.startNode(id)))
    } catch (error) {
      await cluster.dispose()
      throw error
    }
    return cluster
  }

  /** The value of `--cluster`. */
  get url(): string {
    return `${this.redis.url}/0`
  }

  /** Spawns a node process without waiting for it (killed by `dispose`); `url` replaces `--cluster` (a proxy in front of Redis). */
  spawn(id: string, extra: string[] = [], url = this.url): BrokerProcess {
    const node = new BrokerProcess(nodeArgs(url, id, extra))
    this.started.push({ id, node })
    return node
  }

  /** Starts node `id` and waits until it serves; it becomes the node's current process. `url` replaces `--cluster`. */
  async startNode(id: string, extra: string[] = [], url = this.url): Promise<BrokerProcess> {
    const node = this.spawn(id, extra, url)
    this.current.set(id, node)
    try {
      await node.waitFor(new RegExp(`^culex: cluster node ${escapeRegExp(id)} on redis://\\S+`, 'm'), START_MS)
      const match = await node.waitFor(/^culex: listening on mqtt:\/\/127\.0\.0\.1:(\d+)\b/m, START_MS)
      node.port = Number(match[1])
    } catch (error) {
      await node.kill()
      throw error
    }
    return node
  }

  /** Starts node `id` unless its current process is alive. */
  async ensure(id: string): Promise<BrokerProcess> {
    const node = this.current.get(id)
    if (node !== undefined && node.alive) return node
    return this.startNode(id)
  }

  node(id: string): BrokerProcess {
    const node = this.current.get(id)
    if (node === undefined) throw new Error(`no node ${id} started`)
    return node
  }

  port(id: string): number {
    const node = this.node(id)
    if (!node.alive) throw new Error(`node ${id} is not running (exit ${node.exitCode}, ${node.exitSignal}):\n${tail(node)}`)
    return node.port
  }

  /** SIGKILL now, synchronously (from a packet callback). */
  killNow(id: string): void {
    this.node(id).killNow()
  }

  /** SIGKILLs node `id` and waits until it is gone; fails if it had died before, of something else. */
  async kill(id: string): Promise<void> {
    const node = this.node(id)
    const wasAlive = node.alive && node.child.signalCode === null
    await node.kill()
    if (!wasAlive && !node.killedBySigkill()) throw new Error(`node ${id} had exited before it was killed (exit ${node.exitCode}, ${node.exitSignal}):\n${tail(node)}`)
    if (!node.killedBySigkill()) throw new Error(`node ${id} did not die of SIGKILL (exit ${node.exitCode}, ${node.exitSignal}):\n${tail(node)}`)
  }

  /** A raw client on node `id` whose CONNACK accepted (see `connectPeer`). */
  async connect(id: string, options: SessionOptions, setup?: (peer: Peer) => void): Promise<{ peer: Peer; connack: ConnackPacket }> {
    const result = await connectPeer(this.port(id), options, setup)
    this.peers.push(result.peer)
    return result
  }

  /** A raw client on node `id`, with its CONNACK whatever it says (undefined: closed before it). */
  async tryConnect(id: string, options: SessionOptions, setup?: (peer: Peer) => void): Promise<{ peer: Peer; connack: ConnackPacket | undefined }> {
    const result = await tryConnectPeer(this.port(id), options, setup)
    this.peers.push(result.peer)
    return result
  }

  /**
   * Connects to node `id` again and again while the CONNACK refuses or the connection closes
   * before it (a node may refuse a session whose dead owner's lease still runs), for `ms` at most.
   * Returns the accepted connection and the refusals seen before it.
   */
  async connectRetrying(id: string, options: SessionOptions, setup: (peer: Peer) => void, ms: number): Promise<{ peer: Peer; connack: ConnackPacket; refusals: string[] }> {
    const refusals: string[] = []
    const deadline = performance.now() + ms
    for (;;) {
      const { peer, connack } = await this.tryConnect(id, options, setup)
      if (connack !== undefined && connack.returnCode === 0) return { peer, connack, refusals }
      refusals.push(connack === undefined ? 'closed before CONNACK' : `CONNACK 0x${connack.returnCode.toString(16)}`)
      peer.destroy()
      if (performance.now() > deadline) throw new Error(`${options.clientId} on ${id}: no accepting CONNACK within ${ms} ms; got ${some(refusals)}\n${this.logs()}`)
      // A back-off between attempts, as any client's reconnect does; not a synchronisation.
      await new Promise<void>((resolve) => realTimer(100, resolve))
    }
  }

  /** A TCP connection to node `id`, no CONNECT sent. */
  async tcp(id: string, version: 4 | 5): Promise<Peer> {
    const peer = await Peer.tcp(this.port(id), version)
    this.peers.push(peer)
    return peer
  }

  /** An `mqtt` client on node `id` (no reconnects), with everything it receives from the start. */
  async mqtt(id: string, options: IClientOptions): Promise<{ client: MqttClient; connack: IConnackPacket; inbox: Inbox }> {
    const client = mqtt.connect({ host: '127.0.0.1', port: this.port(id), reconnectPeriod: 0, connectTimeout: WAIT_MS, ...options })
    this.mqttClients.push(client)
    const inbox = new Inbox(client)
    const connack = await new Promise<IConnackPacket>((resolve, reject) => {
      client.once('connect', resolve)
      client.once('error', reject)
      client.once('close', () => reject(new Error(`${options.clientId ?? 'an mqtt client'} on ${id}: closed before CONNACK`)))
    })
    client.removeAllListeners('error')
    client.on('error', () => {})
    return { client, connack, inbox }
  }

  /**
   * A marker round trip: a new client on node `from` publishes `payload` (QoS 1) to `topic`,
   * waits for its PUBACK, and the subscriber must receive it.
   */
  async roundTrip(from: string, topic: string, payload: string, subscriber: AckingSubscriber): Promise<void> {
    const { peer } = await this.connect(from, { clientId: `marker-${from}-${payload}`.slice(0, 64) })
    await publishAndAck(peer, topic, payload, 1)
    await peer.disconnect()
    await subscriber.waitFor(payload)
  }

  /** The output of every node process started, the most recent last, for failure messages. */
  logs(chars = 3000): string {
    return this.started
      .map(({ id, node }) => `--- node ${id} (pid ${node.pid}, ${node.alive ? 'running' : `exit ${node.exitCode} ${node.exitSignal ?? ''}`}) ---\n${tail(node, chars)}`)
      .join('\n')
  }

  /** Ends the clients, kills every node process and removes Redis. */
  async dispose(): Promise<void> {
    for (const client of this.mqttClients) client.end(true)
    for (const peer of this.peers) peer.destroy()
    await Promise.all(this.started.map(({ node }) => node.kill()))
    await this.redis.dispose()
  }
}

// ---------------------------------------------------------------------------------------------
// Raw clients
// ---------------------------------------------------------------------------------------------

/** `Peer.connect`'s options, with a will and CONNECT properties. */
export interface SessionOptions extends ConnectOptions {
  will?: WillMessage
  /** MQTT 5 CONNECT properties (merged with `sessionExpiry`). */
  properties?: Properties
}

/** The CONNECT packet of `options`. */
export function connectPacket(options: SessionOptions): ConnectPacket {
  const version = options.version ?? 4
  const packet: ConnectPacket = {
    type: 'connect',
    protocolName: 'MQTT',
    protocolVersion: version,
    cleanSession: options.clean ?? true,
    keepAlive: 0,
    clientId: options.clientId,
  }
  if (options.will !== undefined) packet.will = options.will
  if (version === 5) {
    const properties: Properties = { ...options.properties }
    if (options.sessionExpiry !== undefined) properties.sessionExpiryInterval = options.sessionExpiry
    if (Object.keys(properties).length > 0) packet.properties = properties
  }
  return packet
}

/**
 * Connects and waits for the CONNACK or the connection's end; returns the CONNACK whatever it
 * says (undefined when the connection closed first). `setup` runs before CONNECT is sent.
 */
export async function tryConnectPeer(port: number, options: SessionOptions, setup?: (peer: Peer) => void): Promise<{ peer: Peer; connack: ConnackPacket | undefined }> {
  const peer = await Peer.tcp(port, options.version ?? 4)
  let connack: ConnackPacket | undefined
  peer.on((p) => {
    if (p.type === 'connack' && connack === undefined) connack = p
  })
  setup?.(peer)
  peer.send(connectPacket(options))
  await peer.until(() => connack !== undefined || peer.closed, `CONNACK for ${options.clientId}`)
  return { peer, connack }
}

/** `tryConnectPeer`, whose CONNACK must accept. */
export async function connectPeer(port: number, options: SessionOptions, setup?: (peer: Peer) => void): Promise<{ peer: Peer; connack: ConnackPacket }> {
  const { peer, connack } = await tryConnectPeer(port, options, setup)
  if (connack === undefined) throw new Error(`the broker on port ${port} closed the connection of ${options.clientId} before CONNACK`)
  if (connack.returnCode !== 0) {
    peer.destroy()
    throw new Error(`CONNACK for ${options.clientId} on port ${port} refused: 0x${connack.returnCode.toString(16)}`)
  }
  return { peer, connack }
}

/** Publishes one message (QoS 1 or 2) with packet identifier 65535 and waits for its PUBACK (or PUBREC, then PUBCOMP), which must succeed. */
export async function publishAndAck(peer: Peer, topic: string, payload: string, qos: 1 | 2, options: { retain?: boolean } = {}): Promise<void> {
  const packetId = 65535
  let done = false
  let code: number | undefined
  // Peer listeners stay for the connection's life: this one ignores everything once its exchange is over.
  peer.on((p) => {
    if (done || !('packetId' in p) || p.packetId !== packetId) return
    if (p.type === 'puback' || p.type === 'pubcomp') {
      code ??= p.reasonCode ?? 0
      done = true
    } else if (p.type === 'pubrec') {
      code = p.reasonCode ?? 0
      if (code >= 0x80) done = true
      else peer.send({ type: 'pubrel', packetId })
    }
  })
  peer.publish(topic, payload, qos, packetId, options)
  await peer.until(() => done || peer.closed, `the acknowledgement of ${payload} on ${topic}`)
  if (!done) throw new Error(`the connection closed before ${payload} was acknowledged`)
  if ((code ?? 0) >= 0x80) throw new Error(`${payload} refused: 0x${(code ?? 0).toString(16)}`)
}

// ---------------------------------------------------------------------------------------------
// Floods
// ---------------------------------------------------------------------------------------------

export interface FloodOptions {
  topic: string
  qos: 1 | 2
  /** Payloads are `${tag}:${i}`. */
  tag: string
  total: number
  /** PUBLISHes unacknowledged at once (at most the nodes' receive maximum, 100). Default 50. */
  window?: number
  /** Called on each successful acknowledgement with the count so far (a kill point, a takeover). */
  onAck?: (count: number) => void
}

/**
 * A numbered flood from one raw client: `${tag}:0` ... `${tag}:${total - 1}`, in order, through a
 * window; a QoS 2 message counts as acknowledged at its PUBREC (the broker then owns it), and its
 * packet identifier is reused only after PUBCOMP.
 */
export class Flood {
  /** Payloads the broker acknowledged with success, in the order of the acknowledgements. */
  readonly acked: string[] = []
  readonly ackedSet = new Set<string>()
  /** Payloads refused (reason code >= 0x80), with the code. */
  readonly refused: string[] = []
  sent = 0
  private completed = 0
  private readonly outstanding = new Map<number, string>()
  private readonly window: number

  constructor(
    readonly peer: Peer,
    readonly options: FloodOptions,
  ) {
    this.window = options.window ?? 50
    peer.on((p) => this.handle(p))
  }

  static payload(tag: string, i: number): string {
    return `${tag}:${i}`
  }

  /** Every payload of the flood, in publish order. */
  payloads(): string[] {
    return Array.from({ length: this.options.total }, (_, i) => Flood.payload(this.options.tag, i))
  }

  start(): this {
    this.peer.socket.cork()
    for (let i = 0; i < this.window && this.sent < this.options.total; i++) this.sendNext()
    this.peer.socket.uncork()
    return this
  }

  /** Every message acknowledged (or refused) and its exchange complete. */
  get done(): boolean {
    return this.completed === this.options.total
  }

  /** Waits until `done`; fails if the connection closes first. */
  async finished(ms = WAIT_MS * 2): Promise<void> {
    await this.peer.until(() => this.done || this.peer.closed, () => `the flood ${this.options.tag} to be acknowledged (${this.acked.length} of ${this.options.total}, ${this.sent} sent)`, ms)
    if (!this.done) throw new Error(`the publisher's connection closed during the flood ${this.options.tag} (${this.acked.length} of ${this.options.total} acknowledged)`)
  }

  private sendNext(): void {
    const i = this.sent++
    const packetId = (i % 65534) + 1
    const payload = Flood.payload(this.options.tag, i)
    this.outstanding.set(packetId, payload)
    this.peer.publish(this.options.topic, payload, this.options.qos, packetId)
  }

  private accept(payload: string, code: number): void {
    if (code >= 0x80) {
      this.refused.push(`${payload}=0x${code.toString(16)}`)
      return
    }
    this.acked.push(payload)
    this.ackedSet.add(payload)
    this.options.onAck?.(this.acked.length)
  }

  private complete(packetId: number): void {
    this.outstanding.delete(packetId)
    this.completed++
    if (this.sent < this.options.total) this.sendNext()
  }

  private handle(p: Packet): void {
    if (p.type === 'puback' && this.options.qos === 1) {
      const payload = this.outstanding.get(p.packetId)
      if (payload === undefined) return
      this.accept(payload, p.reasonCode ?? 0)
      this.complete(p.packetId)
    } else if (p.type === 'pubrec' && this.options.qos === 2) {
      const payload = this.outstanding.get(p.packetId)
      if (payload === undefined) return
      const code = p.reasonCode ?? 0
      this.accept(payload, code)
      if (code >= 0x80) this.complete(p.packetId)
      else this.peer.send({ type: 'pubrel', packetId: p.packetId })
    } else if (p.type === 'pubcomp' && this.options.qos === 2) {
      if (this.outstanding.has(p.packetId)) this.complete(p.packetId)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/** The number in `${tag}:${n}`, or undefined for any other payload. */
export function indexIn(tag: string, payload: string): number | undefined {
  if (!payload.startsWith(`${tag}:`)) return undefined
  const n = Number(payload.slice(tag.length + 1))
  return Number.isInteger(n) ? n : undefined
}

/** Where the first arrivals of `${tag}:n` payloads (in `arrivals`, in order) go backwards: "a after b". */
export function orderViolations(arrivals: readonly string[], tag: string): string[] {
  const seen = new Set<number>()
  const violations: string[] = []
  let last = -1
  for (const payload of arrivals) {
    const n = indexIn(tag, payload)
    if (n === undefined || seen.has(n)) continue
    seen.add(n)
    if (n < last) violations.push(`${n} after ${last}`)
    last = Math.max(last, n)
  }
  return violations
}

/** Payloads of `expected` delivered to none of `subscribers`. */
export function missingFrom(expected: Iterable<string>, subscribers: readonly AckingSubscriber[]): string[] {
  return [...expected].filter((payload) => !subscribers.some((s) => s.delivered.has(payload)))
}

/** Deliveries beyond the first, over all `subscribers`, of payloads that `include` accepts. */
export function duplicates(subscribers: readonly AckingSubscriber[], include: (payload: string) => boolean): string[] {
  const counts = new Map<string, number>()
  for (const s of subscribers) for (const [payload, n] of s.delivered) if (include(payload)) counts.set(payload, (counts.get(payload) ?? 0) + n)
  return [...counts].filter(([, n]) => n > 1).map(([payload, n]) => `${payload}x${n}`)
}

/** Waits until every payload of `expected` was delivered to one of `subscribers`; `ms` bounds it. `cluster`'s logs go in the failure. */
export async function waitDelivered(expected: readonly string[], subscribers: readonly AckingSubscriber[], ms: number, what: string, cluster?: Cluster): Promise<void> {
  await until(() => missingFrom(expected, subscribers).length === 0, ms, () => {
    const missing = missingFrom(expected, subscribers)
    const counts = subscribers.map((s) => s.delivered.size).join(', ')
    return `${what}: ${missing.length} of ${expected.length} still missing (${some(missing)}); deliveries per subscriber: ${counts}${cluster === undefined ? '' : `\n${cluster.logs()}`}`
  })
}

/**
 * A bounded wait during which nothing is expected to happen: the last step of a test that must
 * show that something (a second will, a delayed will) does not come, where no fence exists. Never
 * a synchronisation.
 */
export function observeQuiet(ms: number): Promise<void> {
  return new Promise((resolve) => realTimer(ms, resolve))
}

// ---------------------------------------------------------------------------------------------
// A network partition between one node and Redis
// ---------------------------------------------------------------------------------------------

/**
 * How `TcpProxy.cut` partitions:
 * - `reset`: every connection through the proxy is reset (RST) and every new one is reset as soon
 *   as it is accepted, so the node's client sees errors at once and reconnects in vain;
 * - `blackhole`: connections stay open but nothing passes in either direction, new ones are
 *   accepted and get nothing either, so the node's commands go unanswered (no error, no close).
 *   What was sent meanwhile is held, and delivered in order when the cut heals, as TCP would
 *   after a partition shorter than its retransmission timeout.
 */
export type CutStyle = 'reset' | 'blackhole'

/** One direction of a proxied connection. */
interface ProxyLink {
  from: net.Socket
  to: net.Socket
  /** Data held while the link is cut (blackholed). */
  held: Buffer[]
  /** `from` ended (FIN) while the data was held: `to` is ended after the held data at heal. */
  ended: boolean
}

/**
 * A TCP proxy on 127.0.0.1 in front of a server (Redis), which a test can cut (`cut`) and heal
 * (`heal`): a node started with `--cluster redis://127.0.0.1:<proxy port>/0` reaches Redis only
 * through it, while the other nodes reach Redis directly.
 */
export class TcpProxy {
  /** Connections accepted (all time), and reset because of a cut. */
  accepted = 0
  resets = 0
  private state: 'open' | CutStyle = 'open'
  private readonly links = new Set<ProxyLink>()
  private readonly sockets = new Set<net.Socket>()

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
    readonly targetPort: number,
    /** Milliseconds every chunk waits before it is passed on, each way (a slow link). */
    readonly delayMs: number,
  ) {}

  static async start(targetPort: number, options: { delayMs?: number } = {}): Promise<TcpProxy> {
    const server = net.createServer({ pauseOnConnect: true })
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject)
        resolve((server.address() as net.AddressInfo).port)
      })
    })
    const proxy = new TcpProxy(server, port, targetPort, options.delayMs ?? 0)
    server.on('connection', (socket) => proxy.accept(socket))
    return proxy
  }

  /** `redis://127.0.0.1:<port>/0`: the `--cluster` of the node behind the proxy. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}/0`
  }

  get cutStyle(): CutStyle | undefined {
    return this.state === 'open' ? undefined : this.state
  }

  /** Cuts the link (see `CutStyle`). */
  cut(style: CutStyle): void {
    if (this.state !== 'open') throw new Error(`the proxy is already cut (${this.state})`)
    this.state = style
    if (style === 'reset') for (const socket of [...this.sockets]) this.reset(socket)
  }

  /** Heals the link: blackholed data flows on, in order; new connections pass again. */
  heal(): void {
    this.state = 'open'
    for (const link of [...this.links]) this.flush(link)
  }

  /** Closes the proxy and every connection through it. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private reset(socket: net.Socket): void {
    this.resets++
    this.sockets.delete(socket)
    if (!socket.destroyed) socket.resetAndDestroy()
  }

  private accept(client: net.Socket): void {
    this.accepted++
    if (this.state === 'reset') {
      this.reset(client)
      return
    }
    // Writes to the upstream socket while it connects are queued by the socket itself.
    const upstream = net.connect(this.targetPort, '127.0.0.1')
    for (const socket of [client, upstream]) {
      this.sockets.add(socket)
      socket.setNoDelay(true)
      socket.on('error', () => {})
    }
    for (const link of [
      { from: client, to: upstream, held: [], ended: false },
      { from: upstream, to: client, held: [], ended: false },
    ] as ProxyLink[]) {
      this.links.add(link)
      link.from.on('data', (chunk: Buffer) => {
        if (this.state !== 'open') link.held.push(chunk)
        // Timers of one delay fire in the order they were set: the stream keeps its order.
        else if (this.delayMs > 0) setTimeout(() => link.to.destroyed || link.to.write(chunk), this.delayMs)
        else link.to.write(chunk)
      })
      const ended = (): void => {
        link.ended = true
        if (this.state === 'open') this.flush(link)
      }
      link.from.on('end', ended)
      link.from.on('close', () => {
        this.sockets.delete(link.from)
        ended()
      })
    }
    client.resume()
  }

  /** Passes on what `link` held, and its end (a reset is passed on as a reset). */
  private flush(link: ProxyLink): void {
    if (link.ended) this.links.delete(link)
    if (link.to.destroyed) return
    for (const chunk of link.held) link.to.write(chunk)
    link.held = []
    if (!link.ended) return
    if (link.from.errored !== null) link.to.destroy()
    else link.to.end()
  }
}
