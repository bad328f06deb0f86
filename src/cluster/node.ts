import { hostname } from 'node:os'
import type { Redis } from 'ioredis'
import { log } from '../logging.js'
import { topicMatches } from '../protocol/topics.js'
import type { RestoredSession, StoredMessage } from '../persistence/adapter.js'
import type { Journal } from '../persistence/journal.js'
import { decodeStoredMessage } from '../persistence/redis/codec.js'
import { parseSharedFilter } from '../routing/shared-group.js'
import { connectRedis, loadIoredis } from '../persistence/redis/connect.js'
import type { ClusterClaims } from './claims.js'
import { decodeForward, encodeForwardEntry } from './codec.js'
import type { JournalOp } from './ops.js'
import type { ClusterOptions } from './options.js'
import { ClusterRoutes, streamIdAfter } from './routes.js'
import { ACKED, ADOPT, ADOPT_LATE, CLAIM, JOIN, KICK, LEAVE, RELEASE, RENEW, SNAPSHOT } from './scripts.js'
import { ClusterStore, type CommitRouting } from './store.js'

const DEFAULT_LEASE_MS = 5000
const NODE_ID = /^[A-Za-z0-9._-]{1,128}$/
/** Message identifiers come in blocks of this many, handed out by Redis, so nodes never collide. */
const ID_BLOCK = 2 ** 23

/** What a node needs from the broker it is part of (`BrokerCore`). */
export interface ClusterHost {
  readonly journal: Journal
  /** Puts sessions read from the store in memory, as a restart does: routed, deliveries back, wills due. */
  installSessions(sessions: RestoredSession[]): void
  /** Whether a session for this client id is in memory. */
  hasSession(clientId: string): boolean
  /** The client ids of the sessions in memory. */
  sessionIds(): Iterable<string>
  /** Closes the client's connection (taken over) and forgets its session without touching the store. */
  releaseSession(clientId: string): void
  /** A message from another node: to local subscribers (only those of `only`, when given; only the group `share`, when given). */
  deliverRemote(message: StoredMessage, share: string | undefined, only?: ReadonlySet<string>): void
  /** The retained message of a topic changed on another node. */
  retainedChanged(topic: string, message: StoredMessage | null): void
  /** Forgets every session and subscription in memory (the node rejoins from the store). */
  forgetSessions(): void
  /** Message identifiers: a block of them, and how to ask for the next (`SessionStore.messageIdBlock`). */
  messageIdBlock(first: number, size: number, more: () => void): void
}

/** Sessions on their way to this node, and the messages for them handled meanwhile. */
interface Arriving {
  readonly clients: ReadonlySet<string>
  /** Their (non-shared) topic filters. */
  readonly filters: readonly string[]
  readonly messages: StoredMessage[]
}

/** A claim waiting for the owner to hand a session over. */
interface Waiting {
  epoch: number
  settle: (outcome: 'released' | 'lost' | 'recheck') => void
}

type StreamEntries = Array<[Buffer, Buffer[]]>
/** XREAD's reply: [key, entries] pairs (RESP2), or key, entries, key, ... flat (a RESP3 map as ioredis hands it over). */
type XReadReply = Array<[Buffer, StreamEntries] | Buffer | StreamEntries> | null

/**
 * One broker process's part in a cluster: its lease, the routes, its inbox and control streams,
 * session claims and hand-overs, and the adoption of dead nodes' sessions. The broker's store
 * (`ClusterStore`) commits through it, so forwarding a message and the state change it goes with
 * are one atomic batch.
 */
export class ClusterNode implements CommitRouting, ClusterClaims {
  readonly nodeId: string
  readonly leaseMs: number
  readonly store: ClusterStore
  readonly routes: ClusterRoutes
  private host: ClusterHost | undefined
  private incarnation = 0
  private reader: Redis | undefined
  private stopped = false
  private isFenced = false
  private renewTimer: NodeJS.Timeout | undefined
  private reapTimer: NodeJS.Timeout | undefined
  private lastRenewed = 0
  private renewing = false
  private restoring = false
  /** Stream positions: this node's inbox and control stream, the route and retained logs. */
  private inboxId = '0-0'
  private inboxReadId = '0-0'
  /** Bumped when the inbox is read again from its start: a read in flight then is thrown away. */
  private inboxGeneration = 0
  private ctlId = '0-0'
  private retainedLogId = '0-0'
  /** Inbox entries read and not handled yet (held while the node is fenced). */
  private held: Array<[string, Buffer]> = []
  /**
   * Sessions on their way here (a claim waiting for the hand-over, an adoption loading): the
   * messages for them that this node handles meanwhile are kept, and delivered to them once
   * they are in memory.
   */
  private readonly arriving = new Set<Arriving>()
  /** Clients of an adoption in progress: a hand-over request for one waits until it is done. */
  private readonly adopting = new Set<string>()
  private adoptions: Promise<void> = Promise.resolve()
  /** One claim per client id at a time on this node; a second CONNECT shares its outcome. */
  private readonly claims = new Map<string, Promise<boolean>>()
  private readonly waiting = new Map<string, Waiting>()
  /** Hand-over requests waiting until this node handled its inbox up to the id the claim saw. */
  private kicks: Array<{ clientId: string; epoch: number; upto: string }> = []
  /** The latest epoch of this node's own claim per client, to ignore hand-over requests older than it. */
  private readonly epochs = new Map<string, number>()
  /** Clients whose claim by this node is in flight; a hand-over request for one waits until the claim's outcome took effect. */
  private readonly claiming = new Map<string, number>()
  private readonly deferredKicks = new Map<string, Array<{ epoch: number; upto: string }>>()
  /** The highest route version this node recorded as seen. */
  private confirmed = 0
  private readonly ready: Promise<void>
  private resolveReady!: () => void
  private loop: Promise<void> | undefined

  constructor(private readonly options: ClusterOptions) {
    const nodeId = options.nodeId ?? `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9._-]/g, '-')
    if (!NODE_ID.test(nodeId)) throw new TypeError(`cluster.nodeId must be 1 to 128 letters, digits, '.', '_' or '-', got ${JSON.stringify(nodeId)}`)
    const leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS
    if (!Number.isInteger(leaseMs) || leaseMs < 300 || leaseMs > 600_000) throw new RangeError('cluster.leaseMs must be an integer from 300 to 600000')
    this.nodeId = nodeId
    this.leaseMs = leaseMs
    const storeOptions: ConstructorParameters<typeof ClusterStore>[0] = { redis: options.redis }
    if (options.prefix !== undefined) storeOptions.prefix = options.prefix
    if (options.strict !== undefined) storeOptions.strict = options.strict
    this.store = new ClusterStore(storeOptions)
    this.store.routing = this
    this.routes = new ClusterRoutes(nodeId, (op) => this.record(op))
    this.ready = new Promise((resolve) => (this.resolveReady = resolve))
  }

  /** This incarnation's owner token: `<node id>#<incarnation>`. */
  get token(): string {
    return `${this.nodeId}#${this.incarnation}`
  }

  /** Whether the node holds its lease (false: clients are refused). */
  get accepting(): boolean {
    return !this.isFenced && !this.stopped
  }

  private get P(): string {
    return this.store.keyPrefix
  }

  private get redis(): Redis {
    return this.store.redis
  }

  private record(op: JournalOp): void {
    // Route operations ride in the journal (typed for persistence operations; only this store reads them).
    this.host?.journal.record(op as never)
  }

  /**
   * Joins (after the store opened): takes the node id, reads the routes, takes back the sessions
   * an earlier incarnation of this node owned, then starts reading its streams. Rejects when a
   * live node holds the id.
   */
  async start(host: ClusterHost): Promise<void> {
    this.host = host
    await this.join()
    // Renewed from now on: taking the sessions back may take longer than a lease.
    this.renewTimer = setInterval(() => this.tick(), Math.floor(this.leaseMs / 6))
    this.renewTimer.unref()
    await this.messageIds()
    await this.snapshot()
    const Redis = await loadIoredis('cluster')
    this.reader = connectRedis(Redis, this.options.redis, { maxRetriesPerRequest: null, lazyConnect: true })
    this.reader.on('error', (error: Error) => log.broker('cluster reader: %s', error.message))
    await this.reader.connect()
    await this.adopt(this.nodeId)
    this.reapTimer = setInterval(() => void this.reap(), Math.floor(this.leaseMs / 2))
    this.reapTimer.unref()
    this.loop = this.readLoop()
    this.loop.catch((error: unknown) => log.error('cluster: the stream reader stopped: %O', error))
    log.broker('Cluster node %s joined (incarnation %d)', this.nodeId, this.incarnation)
    this.resolveReady()
  }

  /** Leaves: stops reading and renewing, gives the lease up (the sessions stay with the node id for its next start, or a survivor). */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.renewTimer)
    clearInterval(this.reapTimer)
    for (const [, w] of this.waiting) w.settle('lost')
    this.reader?.disconnect()
    await this.loop?.catch(() => {})
    try {
      if (this.incarnation > 0) await this.redis.eval(LEAVE, 0, this.P, this.nodeId, String(this.incarnation))
    } catch {
      // Redis unreachable: the lease expires by itself.
    }
  }

  // --- Forwarding and commits ---------------------------------------------------------------

  /**
   * A message published on this node goes, in the batch that acknowledges it, to every other
   * node with a matching subscription, and to one node per shared group that has members on
   * other nodes only. Routed now: a route acknowledged (SUBACK) anywhere is in every node's view
   * before its acknowledgement left (`applied`), so nothing routed after it misses it.
   */
  forward(message: StoredMessage): void {
    if (this.arriving.size > 0) this.keepForArriving(message)
    const { nodes, groups } = this.routes.match(message.topic)
    if (nodes.size === 0 && groups.length === 0) return
    if (nodes.size > 0) {
      const entry = encodeForwardEntry(message)
      for (const node of nodes) this.record({ op: 'forward', node, entry })
    }
    for (const group of groups) {
      const to = this.routes.pickShared(group, false)
      if (to !== undefined) this.record({ op: 'forward', node: to, entry: encodeForwardEntry(message, group) })
    }
  }

  header(): string {
    return `${this.token}\n${this.nodeId}`
  }

  routesSeen(version: string): Promise<void> {
    return this.everyNodeHasSeen(Number(version))
  }

  /**
   * Resolves once every other live node has applied route version `version` and committed what
   * it routed before (each records that in `{p}:seen`); a node whose lease lapses meanwhile no
   * longer counts. Bounded: after two leases it resolves anyway, with a log line.
   */
  private async everyNodeHasSeen(version: number): Promise<void> {
    const deadline = Date.now() + 2 * this.leaseMs
    let pause = 1
    for (;;) {
      let behind: string[]
      try {
        behind = ((await this.redis.eval(ACKED, 0, this.P, this.nodeId, String(version))) as string[]).map(String)
      } catch (error) {
        log.broker('cluster: checking that the other nodes saw the routes failed: %s', (error as Error).message)
        behind = ['?']
      }
      if (behind.length === 0) return
      if (this.stopped || Date.now() > deadline) {
        log.error('cluster: nodes %s did not confirm route version %d within two leases; going on', behind.join(', '), version)
        return
      }
      await new Promise((resolve) => setTimeout(resolve, pause))
      pause = Math.min(pause * 2, 50)
    }
  }

  /** Records in Redis that this node applied route version `version`, once what it routed before is committed. */
  private confirmRoutes(version: string): void {
    const host = this.host
    if (host === undefined) return
    host.journal.whenCommitted(() => {
      if (Number(version) <= this.confirmed) return
      this.redis.hset(`${this.P}:seen`, this.nodeId, version).then(
        () => (this.confirmed = Math.max(this.confirmed, Number(version))),
        (error: Error) => log.broker('cluster: confirming routes failed (confirmed with the next change): %s', error.message),
      )
    })
  }

  reaches(topic: string): boolean {
    const { nodes, groups } = this.routes.match(topic)
    return nodes.size > 0 || groups.length > 0
  }

  // --- Shared subscriptions ------------------------------------------------------------------

  /** The node that gets this message of a shared group: this one (`local` members) or another. */
  pickShared(group: string, local: boolean, except?: string): string | undefined {
    return this.routes.pickShared(group, local, except)
  }

  /** Sends a message of a shared group to the node picked for it, in the current batch. */
  forwardShared(message: StoredMessage, group: string, to: string): void {
    this.record({ op: 'forward', node: to, entry: encodeForwardEntry(message, group) })
  }

  // --- Claims and hand-overs -----------------------------------------------------------------

  /**
   * A CONNECT for `clientId` arrived here: makes this node its owner, with its stored session in
   * memory (taken from the previous owner, which closes its connection first). Resolves false
   * when a newer claim from another node won, or when the previous owner never answered.
   */
  claim(clientId: string): Promise<boolean> {
    let claim = this.claims.get(clientId)
    if (claim === undefined) {
      claim = this.claimFor(clientId).finally(() => this.claims.delete(clientId))
      this.claims.set(clientId, claim)
    }
    return claim
  }

  private async claimFor(clientId: string): Promise<boolean> {
    await this.ready
    this.claiming.set(clientId, (this.claiming.get(clientId) ?? 0) + 1)
    try {
      return await this.claimOnce(clientId)
    } finally {
      const n = (this.claiming.get(clientId) ?? 1) - 1
      if (n > 0) this.claiming.set(clientId, n)
      else this.claiming.delete(clientId)
      // After the caller acted on the outcome (its continuation runs first): then the requests that came meanwhile.
      setImmediate(() => {
        if (this.claiming.has(clientId)) return
        this.kickDeferred(clientId)
      })
    }
  }

  private kickDeferred(clientId: string): void {
    const deferred = this.deferredKicks.get(clientId)
    this.deferredKicks.delete(clientId)
    for (const k of deferred ?? []) this.kicked(clientId, k.epoch, k.upto)
  }

  private async claimOnce(clientId: string): Promise<boolean> {
    const deadline = Date.now() + 3 * this.leaseMs
    while (!this.stopped && Date.now() < deadline) {
      const reply = (await this.redis.eval(CLAIM, 0, this.P, clientId, this.nodeId, this.token)) as Array<string | number>
      const kind = String(reply[0])
      const epoch = Number(reply[1])
      this.epochs.set(clientId, epoch)
      if (kind === 'OWN') {
        if (!this.host?.hasSession(clientId)) await this.load([clientId])
        return true
      }
      if (kind === 'NOLEASE') return false
      if (kind === 'DEAD' || kind === 'BUSY') {
        // Adopt the dead owner first; a node back with a new incarnation is taking its sessions
        // back: either way, claim again once that is done.
        const adopted = kind === 'DEAD' && (await this.adopt(String(reply[2])))
        if (!adopted) await new Promise((resolve) => setTimeout(resolve, 50))
        continue
      }
      // WAIT: once every node routes C's messages here too, the owner is asked to hand the
      // session over, which it does once it handled what it was sent before.
      const owner = String(reply[2])
      const version = Number(reply[3])
      const filters = reply.slice(4).map(String)
      for (const filter of filters) this.routes.add(filter)
      const arriving: Arriving = { clients: new Set([clientId]), filters: filters.filter((f) => parseSharedFilter(f) === null), messages: [] }
      this.arriving.add(arriving)
      let outcome: 'released' | 'lost' | 'recheck'
      try {
        const settled = new Promise<'released' | 'lost' | 'recheck'>((resolve) => {
          const timer = setTimeout(() => resolve('recheck'), this.leaseMs)
          this.waiting.set(clientId, {
            epoch,
            settle: (o) => {
              clearTimeout(timer)
              resolve(o)
            },
          })
        })
        await this.everyNodeHasSeen(version)
        const asked = Number(await this.redis.eval(KICK, 0, this.P, clientId, owner, this.token, String(epoch)))
        if (asked === 0) this.waiting.get(clientId)?.settle('recheck')
        outcome = await settled
        if (outcome === 'released') await this.load([clientId])
        // In memory and routed from here on: what was kept for it goes now, and nothing more is kept.
        this.arrived(arriving)
      } finally {
        this.waiting.delete(clientId)
        this.arrived(arriving)
        for (const filter of filters) this.routes.remove(filter)
      }
      if (outcome === 'released') return true
      if (outcome === 'lost') return false
      // Still waiting after a lease: claim again (a dead owner is adopted, a live one asked again).
    }
    return false
  }

  /** A message handled here while sessions are on their way: kept for those it matches. */
  private keepForArriving(message: StoredMessage): void {
    for (const arriving of this.arriving) {
      if (arriving.filters.some((filter) => topicMatches(filter, message.topic))) arriving.messages.push(message)
    }
  }

  /** The sessions arrived (or will not): what was kept for them goes to those in memory now. */
  private arrived(arriving: Arriving): void {
    if (!this.arriving.delete(arriving)) return
    const host = this.host
    if (host === undefined || arriving.messages.length === 0) return
    const here = new Set([...arriving.clients].filter((id) => host.hasSession(id)))
    if (here.size === 0) return
    for (const message of arriving.messages) host.deliverRemote(message, undefined, here)
  }

  /** Reads these clients' stored sessions into memory. */
  private async load(clientIds: string[]): Promise<void> {
    const sessions = await this.store.sessionsOf(clientIds.filter((id) => !this.host?.hasSession(id)))
    if (sessions.length > 0) this.host?.installSessions(sessions)
  }

  /** A hand-over request: done once this node handled its inbox up to what the claim saw. */
  private kicked(clientId: string, epoch: number, upto: string): void {
    if (this.claiming.has(clientId) || this.adopting.has(clientId)) {
      // Our own claim's answer may not have arrived yet: its outcome first, then this request.
      const list = this.deferredKicks.get(clientId) ?? []
      list.push({ epoch, upto })
      this.deferredKicks.set(clientId, list)
      return
    }
    if ((this.epochs.get(clientId) ?? 0) > epoch) return
    this.kicks.push({ clientId, epoch, upto })
    this.handleKicks()
  }

  private handleKicks(): void {
    if (this.kicks.length === 0) return
    const due = this.kicks.filter((k) => !streamIdAfter(k.upto, this.inboxId))
    if (due.length === 0) return
    this.kicks = this.kicks.filter((k) => streamIdAfter(k.upto, this.inboxId))
    const host = this.host as ClusterHost
    for (const { clientId, epoch } of due) {
      // A newer claim of this node's own came meanwhile: the request is stale.
      if (this.claiming.has(clientId) || this.adopting.has(clientId)) {
        this.kicked(clientId, epoch, '0-0')
        continue
      }
      if ((this.epochs.get(clientId) ?? 0) > epoch) continue
      host.releaseSession(clientId)
      // Everything this node did with the session is committed before the next owner reads it.
      host.journal.whenCommitted(() => {
        this.redis.eval(RELEASE, 0, this.P, clientId, this.token, String(epoch)).then(
          (n) => log.client('Handed the session of %s over (%d)', clientId, Number(n)),
          (error: Error) => log.error('cluster: handing %s over failed: %s', clientId, error.message),
        )
      })
    }
  }

  // --- Adoption of dead nodes ----------------------------------------------------------------

  /** Every other node whose lease expired is adopted by one survivor. */
  private async reap(): Promise<void> {
    if (this.stopped || this.isFenced) return
    // The claim epochs of clients whose session left this node no longer matter.
    for (const clientId of this.epochs.keys()) if (!this.claiming.has(clientId) && this.host?.hasSession(clientId) !== true) this.epochs.delete(clientId)
    try {
      const nodes = await this.redis.smembers(`${this.P}:nodes`)
      for (const node of nodes) {
        if (node === this.nodeId || this.stopped) continue
        if ((await this.redis.exists(`${this.P}:lease:${node}`)) === 0) await this.adopt(node)
      }
    } catch (error) {
      log.broker('cluster: checking the other nodes failed: %s', (error as Error).message)
    }
  }

  /**
   * Takes over the sessions of `node` (dead, or this node's own earlier incarnation): they are
   * loaded as a restart would (wills of connections that were open are due), then whatever was
   * still in the dead node's inbox is delivered to them.
   */
  /** Adopts `node` (see `adoptNow`), one adoption at a time; true if this node took it. */
  private adopt(node: string): Promise<boolean> {
    const run = this.adoptions.then(() => this.adoptNow(node))
    this.adoptions = run.then(
      () => undefined,
      () => undefined,
    )
    return run
  }

  private async adoptNow(node: string): Promise<boolean> {
    const host = this.host as ClusterHost
    if (this.isFenced && node !== this.nodeId) return false
    const reply = (await this.redis.eval(ADOPT, 0, this.P, node, this.nodeId, this.token)) as Array<string | number>
    if (String(reply[0]) !== 'OK') return false
    const version = Number(reply[1])
    const aside = String(reply[2])
    const count = Number(reply[3])
    const clients = reply.slice(4, 4 + count).map(String)
    const filters = reply.slice(4 + count).map(String)
    // Held while the sessions load, so that nothing published meanwhile misses them.
    for (const filter of filters) this.routes.add(filter)
    const arriving: Arriving = { clients: new Set(clients), filters: filters.filter((f) => parseSharedFilter(f) === null), messages: [] }
    this.arriving.add(arriving)
    for (const clientId of clients) this.adopting.add(clientId)
    try {
      // Every node routes to this one now, and what they routed to the dead one is in its inbox.
      if (node !== this.nodeId) await this.everyNodeHasSeen(version)
      if (node !== this.nodeId) log.broker('Cluster node %s adopts the %d sessions of node %s', this.nodeId, clients.length, node)
      const sessions = await this.store.sessionsOf(clients.filter((id) => !host.hasSession(id)))
      host.installSessions(sessions)
      this.arrived(arriving)
      const mine: string[] = []
      if (aside !== '') {
        mine.push(aside)
        // What the other nodes sent the dead node until they saw this adoption's routes.
        const late = String(await this.redis.eval(ADOPT_LATE, 0, this.P, node, this.nodeId, aside))
        if (late !== '') mine.push(late)
      }
      for (const key of mine) await this.drain(key, new Set(clients))
      // Inboxes an earlier adoption (of this node or of the node adopted now) left undrained:
      // to the sessions here, whichever they were for.
      const left = (await this.redis.smembers(`${this.P}:drain:${this.nodeId}`)).filter((key) => !mine.includes(key))
      for (const key of left) await this.drain(key, new Set(host.sessionIds()))
      return true
    } finally {
      this.arrived(arriving)
      for (const filter of filters) this.routes.remove(filter)
      for (const clientId of clients) {
        this.adopting.delete(clientId)
        this.kickDeferred(clientId)
      }
    }
  }

  /**
   * Delivers what a dead node's inbox (moved aside to `{p}:<aside>`) still held to the sessions
   * adopted from it; each entry goes in the batch with its deliveries, so an adopter that dies
   * meanwhile leaves the next one only what it did not deliver.
   */
  private async drain(aside: string, only: ReadonlySet<string>): Promise<void> {
    const host = this.host as ClusterHost
    const key = `${this.P}:${aside}`
    let from = '-'
    for (;;) {
      const entries = (await this.redis.xrangeBuffer(key, from, '+', 'COUNT', 1000)) as unknown as Array<[Buffer, Buffer[]]>
      // A node that stopped serving has no sessions to deliver to: the rest waits for whoever takes them.
      if (this.isFenced) return
      for (const [id, fields] of entries) {
        for (const { message, share } of decodeForward(bufferField(fields, 'm'))) host.deliverRemote(message, share, only)
        this.record({ op: 'drainedEntry', key: aside, id: id.toString() })
        from = `(${id.toString()}`
      }
      if (entries.length < 1000) break
    }
    this.record({ op: 'drained', key: aside })
  }

  /** Takes the next block of message identifiers from Redis, and asks again when it runs low. */
  private async messageIds(): Promise<void> {
    const block = await this.redis.incr(`${this.P}:idblock`)
    this.host?.messageIdBlock(block * ID_BLOCK, ID_BLOCK, () => {
      this.messageIds().catch((error: Error) => log.error('cluster: taking a block of message identifiers failed: %s', error.message))
    })
  }

  // --- Lease ---------------------------------------------------------------------------------

  /** Takes the node id with a new incarnation; waits out the lease of a dead earlier holder, refuses a live one. */
  private async join(): Promise<void> {
    const redis = this.redis
    this.incarnation = await redis.incr(`${this.P}:incarnation`)
    const deadline = Date.now() + this.leaseMs + 1000
    let last: LeaseSeen | undefined
    for (;;) {
      const sent = Date.now()
      const joined = (await redis.eval(JOIN, 0, this.P, this.nodeId, String(this.incarnation), String(this.leaseMs))) as number | [string | null, number]
      if (typeof joined === 'number') {
        this.lastRenewed = sent
        return
      }
      const seen: LeaseSeen = { holder: joined[0], ttl: joined[1] }
      const verdict = leaseVerdict(last, seen, Date.now() > deadline)
      if (verdict === 'live') throw new Error(`cluster: node id ${JSON.stringify(this.nodeId)} is held by a live node; give each node its own --node-id`)
      last = seen
      if (verdict === 'wait') await new Promise((resolve) => setTimeout(resolve, Math.min(200, Math.max(20, seen.ttl))))
    }
  }

  /**
   * Every third of a lease: stop serving if the lease was not renewed for most of it (whether
   * Redis refuses, or does not answer at all), and renew it unless a renewal is still out.
   */
  private tick(): void {
    if (this.stopped) return
    if (Date.now() - this.lastRenewed > this.leaseMs - Math.floor(this.leaseMs / 4)) this.fence(true)
    if (this.renewing) return
    this.renewing = true
    this.renew().finally(() => (this.renewing = false))
  }

  private async renew(): Promise<void> {
    // The lease runs from when Redis renewed it, which is after this.
    const sent = Date.now()
    try {
      const answer = this.redis.eval(RENEW, 0, this.P, this.nodeId, String(this.incarnation), String(this.leaseMs))
      const ok = Number(await withTimeout(answer, this.leaseMs, 'renewing the lease'))
      if (ok === 1) {
        this.lastRenewed = sent
        if (this.isFenced) this.restore(() => this.recover())
        return
      }
      // The lease is gone: the other nodes may have adopted our sessions. Start again from the store.
      if (!this.restoring) log.error('cluster: node %s lost its lease; rejoining', this.nodeId)
      this.restore(() => this.rejoin())
    } catch (error) {
      log.broker('cluster: renewing the lease failed: %s', (error as Error).message)
    }
  }

  /**
   * Stops serving before the lease can expire unnoticed: the other nodes may take the sessions
   * over. The clients are dropped as if this node had died (no wills, no session changes: the
   * store keeps them as they were, for whichever node takes them).
   */
  private fence(on: boolean): void {
    if (this.isFenced === on) return
    this.isFenced = on
    if (on) {
      log.error('cluster: node %s cannot renew its lease: dropping its clients until Redis is back', this.nodeId)
      this.forgetSessions()
    } else {
      this.handleHeld()
    }
  }

  /** Runs a recovery once at a time, while the lease keeps being renewed. */
  private restore(run: () => Promise<void>): void {
    if (this.restoring) return
    this.restoring = true
    run()
      .catch((error: Error) => log.error('cluster: node %s could not start serving again: %s', this.nodeId, error.message))
      .finally(() => (this.restoring = false))
  }

  /**
   * Redis is back and the lease is still this node's: nobody adopted its sessions. They were
   * dropped from memory when it stopped serving; it takes them back from the store (wills of the
   * clients it dropped are published then, once).
   */
  private async recover(): Promise<void> {
    const host = this.host as ClusterHost
    await new Promise<void>((resolve) => host.journal.whenCommitted(resolve))
    await this.snapshot()
    // ALIVE: the lease went meanwhile; starting again with a new incarnation is what is left.
    if (!(await this.adopt(this.nodeId))) return this.rejoin()
    log.broker('cluster: node %s serves again', this.nodeId)
    this.fence(false)
  }

  /** Drops the clients and sessions, leaving the store and this node's routes as a crash would. */
  private forgetSessions(): void {
    this.routes.muted = true
    try {
      this.host?.forgetSessions()
    } finally {
      this.routes.muted = false
    }
  }

  private async rejoin(): Promise<void> {
    this.fence(true)
    // Whatever came into memory since the fence (an adoption or a claim finishing) goes too.
    this.forgetSessions()
    const host = this.host as ClusterHost
    // The store refuses this incarnation's changes for good: what it had not committed goes,
    // and the inbox entries those changes would have removed are read again.
    host.journal.discard()
    await new Promise<void>((resolve) => host.journal.whenCommitted(resolve))
    this.inboxGeneration++
    this.inboxReadId = '0-0'
    this.inboxId = '0-0'
    this.held = []
    await this.join()
    await this.messageIds()
    await this.snapshot()
    await this.adopt(this.nodeId)
    this.fence(false)
  }

  // --- Streams -------------------------------------------------------------------------------

  /** The route table as it is now, and where the logs continue. */
  private async snapshot(): Promise<void> {
    const [version, routeLogId, fields] = (await this.redis.eval(SNAPSHOT, 0, this.P)) as [string, string, string[]]
    this.routes.load(String(version), String(routeLogId), fields.map(String))
    this.confirmRoutes(String(version))
    // The store read the retained messages after noting where their log stood: tail it from there.
    if (this.retainedLogId === '0-0') this.retainedLogId = this.store.retainedLogStart
  }

  /** Reads the inbox, the control stream and the two logs, in order, until stopped. */
  private async readLoop(): Promise<void> {
    const P = this.P
    const keys = [`${P}:rlog`, `${P}:retlog`, `${P}:ctl:${this.nodeId}`, `${P}:inbox:${this.nodeId}`]
    while (!this.stopped) {
      let reply: XReadReply
      const generation = this.inboxGeneration
      try {
        const ids = [this.routes.logId, this.retainedLogId, this.ctlId, this.inboxReadId]
        reply = (await (this.reader as Redis).callBuffer('XREAD', 'COUNT', '1000', 'BLOCK', '1000', 'STREAMS', ...keys, ...ids)) as XReadReply
      } catch (error) {
        if (this.stopped) return
        log.broker('cluster: reading the streams failed: %s', (error as Error).message)
        await new Promise((resolve) => setTimeout(resolve, 100))
        continue
      }
      if (reply === null || this.stopped) continue
      // Routes first (what is published next is routed with them), then retained, control, inbox.
      const byKey = streamsByKey(reply)
      try {
        await this.handleRoutes(byKey.get(keys[0] as string) ?? [])
        await this.handleRetained(byKey.get(keys[1] as string) ?? [])
        this.handleControl(byKey.get(keys[2] as string) ?? [])
        for (const [id, fields] of generation === this.inboxGeneration ? (byKey.get(keys[3] as string) ?? []) : []) {
          this.inboxReadId = id.toString()
          this.held.push([this.inboxReadId, bufferField(fields, 'm')])
        }
        this.handleHeld()
      } catch (error) {
        log.error('cluster: handling stream entries failed: %O', error)
      }
    }
  }

  private async handleRoutes(entries: StreamEntries): Promise<void> {
    if (entries.length === 0) return
    for (const [id, fields] of entries) {
      if (!this.routes.apply(id.toString(), bufferField(fields, 'v').toString(), bufferField(fields, 'c').toString())) {
        await this.snapshot()
        return
      }
    }
    this.confirmRoutes(this.routes.version)
  }

  private async handleRetained(entries: StreamEntries): Promise<void> {
    if (entries.length === 0) return
    const topics = new Set<string>()
    const last = (entries[entries.length - 1] as [Buffer, Buffer[]])[0].toString()
    for (const [, fields] of entries) {
      // This node's own changes too: another node's write to the topic may have been read before
      // this one's landed, and Redis's order (the last write wins) is what every node must end with.
      for (const topic of bufferField(fields, 't').toString().split('\0')) topics.add(topic)
    }
    const list = [...topics]
    // Read before the position moves on: a failed read is read again from the same entries.
    const values = list.length === 0 ? [] : await this.redis.hmgetBuffer(`${this.P}:retained`, ...list)
    list.forEach((topic, i) => {
      const value = values[i]
      this.host?.retainedChanged(topic, value === null || value === undefined ? null : decodeStoredMessage(value))
    })
    this.retainedLogId = last
  }

  private handleControl(entries: StreamEntries): void {
    for (const [id, fields] of entries) {
      this.ctlId = id.toString()
      const kind = fields[0]?.toString()
      const clientId = fields[1]?.toString() ?? ''
      const epoch = Number(bufferField(fields, 'e').toString())
      if (kind === 'k') this.kicked(clientId, epoch, bufferField(fields, 'u').toString())
      else if (kind === 'r' || kind === 'l') {
        const w = this.waiting.get(clientId)
        if (w !== undefined && w.epoch === epoch) w.settle(kind === 'r' ? 'released' : 'lost')
        // A claim that gave up got the session after all: it is this node's now, so it is loaded here.
        else if (kind === 'r' && !this.claiming.has(clientId)) this.load([clientId]).catch((error: Error) => log.error('cluster: loading %s failed: %s', clientId, error.message))
      }
    }
    if (entries.length > 0) this.redis.xtrim(`${this.P}:ctl:${this.nodeId}`, 'MINID', this.ctlId).catch(() => {})
  }

  /** Delivers the inbox entries read so far; each entry's end is committed with its deliveries. */
  private handleHeld(): void {
    const host = this.host
    // A fenced node has no sessions to deliver to: what it was sent waits for them.
    if (host === undefined || this.isFenced) return
    const held = this.held
    this.held = []
    for (const [id, blob] of held) {
      try {
        for (const { message, share } of decodeForward(blob)) {
          host.deliverRemote(message, share)
          if (share === undefined && this.arriving.size > 0) this.keepForArriving(message)
        }
      } catch (error) {
        log.error('cluster: an inbox entry %s could not be read: %s', id, (error as Error).message)
      }
      this.record({ op: 'inboxDone', id })
      this.inboxId = id
      this.handleKicks()
    }
    this.handleKicks()
  }
}

function bufferField(fields: Buffer[], name: string): Buffer {
  for (let i = 0; i < fields.length; i += 2) if (fields[i]?.toString() === name) return fields[i + 1] ?? Buffer.alloc(0)
  return Buffer.alloc(0)
}

function streamsByKey(reply: NonNullable<XReadReply>): Map<string, StreamEntries> {
  const out = new Map<string, StreamEntries>()
  if (reply.length > 0 && Buffer.isBuffer(reply[0])) {
    for (let i = 0; i + 1 < reply.length; i += 2) out.set(String(reply[i]), reply[i + 1] as StreamEntries)
    return out
  }
  for (const pair of reply as Array<[Buffer, StreamEntries]>) out.set(pair[0].toString(), pair[1])
  return out
}

/** `promise`, or a rejection after `ms` (a Redis that does not answer at all must not stall the lease's bookkeeping). */
function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Redis did not answer ${what} within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error as Error)
      },
    )
  })
}

/** A lease as a failed join saw it: its holder (incarnation) and ms left (PTTL: -2 gone, -1 no expiry). */
export interface LeaseSeen {
  readonly holder: string | null
  readonly ttl: number
}

/**
 * What a node joining with its id does about a lease held by an earlier incarnation, from two
 * successive looks: `retry` at once when it is gone, `wait` while it runs down (a dead holder's),
 * `live` when it was renewed (its time to live went up), passed to another holder, or outlived
 * the deadline.
 */
export function leaseVerdict(last: LeaseSeen | undefined, seen: LeaseSeen, pastDeadline: boolean): 'retry' | 'wait' | 'live' {
  // Expired since the attempt: nothing holds it now.
  if (seen.holder === null || seen.ttl === -2) return 'retry'
  if (pastDeadline) return 'live'
  if (last === undefined || last.holder === null) return 'wait'
  if (seen.holder !== last.holder || seen.ttl > last.ttl + 50) return 'live'
  return 'wait'
}
