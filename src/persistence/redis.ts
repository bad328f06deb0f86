/**
 * A durable persistence adapter on Redis, through `ioredis` (an optional peer dependency:
 * `npm install ioredis`).
 *
 * ```ts
 * import { Broker } from 'culex-mqtt'
 * import { RedisPersistence } from 'culex-mqtt/redis'
 * const broker = new Broker({ persistence: new RedisPersistence({ redis: 'redis://127.0.0.1:6379', strict: true }) })
 * ```
 *
 * Redis must write every command to its append-only file and fsync it before it answers, or an
 * acknowledged MQTT message can be lost when Redis or its host crashes: `appendonly yes`,
 * `appendfsync always`, `no-appendfsync-on-rewrite no`. `open()` checks these (warns, or with
 * `strict` refuses to open).
 *
 * Key layout, every key under one hash tag `{prefix}` so that one script may touch any of them
 * (and Redis Cluster would keep them in one slot):
 *
 * | Key | Type | Holds |
 * |---|---|---|
 * | `{p}:sessions` | hash | client id → `<expiryInterval>\|<disconnectedAt>`: the sessions, one HGETALL at open |
 * | `{p}:subs:<client>` | hash | topic filter → subscription options (JSON) |
 * | `{p}:d:<client>` | hash | seq → delivery: `<q\|s\|r><packetId>\|<messageId>\|<qos><retain>\|<subscription ids>\|<share group>` |
 * | `{p}:q2:<client>` | set | incoming QoS 2 packet identifiers not yet released |
 * | `{p}:wills` | hash | client id → will message (with `publishAt`) |
 * | `{p}:msg` | hash | message id → message, stored once: `1\|<receivedAt>\|<n>\|<n bytes of JSON header><raw payload>` |
 * | `{p}:mref` | hash | message id → references beyond the first (absent: one delivery refers to it) |
 * | `{p}:orphans` | set | messages no delivery refers to (stored, never queued); `open()` deletes them |
 * | `{p}:retained` | hash | topic → retained message (same format as `msg`) |
 * | `{p}:msgid` | string | the highest message id ever stored (`lastMessageId`) |
 *
 * Why this layout (measured on a 2-core VM, `appendfsync always`):
 * - A commit is one script call, and the script reads and writes in bulk (one HMGET/HSET per key
 *   it touches, not one command per operation): Redis charges a few microseconds per command a
 *   script calls, which otherwise costs more than the rest of the commit.
 * - The usual message, stored and queued for one session, is two hash fields and nothing else
 *   (no reference count written), so a batch writes a constant number of AOF bytes per message
 *   whatever the depth of the queues; the in-flight state is rewritten in place in the short
 *   delivery value.
 * - One session is three keys plus a field of `sessions` and `wills`: a broker node taking a
 *   session over (later, several nodes on one Redis) reads it with a handful of commands.
 * - The few fields the script must read (a delivery's state and message id, a retained message's
 *   `receivedAt`) lead their values, so it never parses JSON; payloads are stored raw, as binary.
 * - `open()` forgets messages no delivery refers to: after a restart the broker knows messages
 *   only through the deliveries it restored, and numbers new ones above `lastMessageId`.
 *
 * @packageDocumentation
 */
import { createHash } from 'node:crypto'
import type { Redis, RedisOptions } from 'ioredis'
import { log } from '../logging.js'
import type { PersistenceAdapter, PersistenceOp, RestoredSession, RestoredState, StoredMessage } from './adapter.js'
import { decodeDelivery, decodeMessage, decodeSession, decodeStoredMessage, decodeSubscription, deliveryMessageId, encodeBatch } from './redis/codec.js'
import { connectRedis, loadIoredis, type RedisConstructor } from './redis/connect.js'
import { COMMIT, FORGET_ORPHANS } from './redis/scripts.js'

/** Options of {@link RedisPersistence}. */
export interface RedisPersistenceOptions {
  /**
   * Where Redis is: a URL (`redis://[:password@]host:port[/db]`, `rediss://` for TLS), ioredis
   * options (Sentinel included: `{ sentinels: [...], name: 'mymaster' }`), or an ioredis client
   * whose options to use. Default: ioredis's default, 127.0.0.1:6379.
   *
   * The adapter always opens its own connection (from a client: `client.duplicate()`), because
   * commits need settings a shared client must not have: no offline queue (a commit while Redis
   * is unreachable fails at once, so the broker withholds acknowledgements instead of waiting) and
   * no re-sending of unanswered commands after a reconnect (a stale batch re-sent after the
   * broker retried it and moved on would undo later batches). A client passed here is left as it
   * is and never closed by the adapter.
   */
  redis?: string | RedisOptions | Redis
  /**
   * What every key starts with, inside a hash tag: `{culex}:sessions`, ... Default `'culex'`.
   * Brokers that must not share state need different prefixes (or databases). No `{` or `}`.
   */
  prefix?: string
  /**
   * Refuse to open (`open()` rejects) when Redis is not configured to fsync every write before
   * answering. Default false: warn and open. When the configuration cannot be read (CONFIG
   * renamed or not permitted, as on many managed services), the adapter warns and opens even
   * when strict, since it has no evidence either way.
   */
  strict?: boolean
  /**
   * Receives the adapter's warnings: Redis does not fsync every write, its configuration could
   * not be read, or (at open) deliveries refer to messages that are not stored. Default: the
   * `culex:persistence` debug log and `process.emitWarning`, with the code
   * `CULEX_REDIS_NOT_DURABLE`, `CULEX_REDIS_UNCHECKED` or `CULEX_REDIS_INCONSISTENT`.
   */
  onWarning?: (message: string) => void
  /**
   * Milliseconds a commit waits for Redis's answer before it rejects (the batch may or may not
   * have been applied; the broker commits it again, and operations are idempotent). Default
   * 5,000. A lost connection rejects the commits in flight at once, without waiting for this.
   */
  commitTimeoutMs?: number
}

/** The Redis settings a durable store needs, and the value each must have. */
const DURABLE_CONFIG: ReadonlyArray<readonly [string, string]> = [
  ['appendonly', 'yes'],
  ['appendfsync', 'always'],
  ['no-appendfsync-on-rewrite', 'no'],
]

const sha1 = (text: string): string => createHash('sha1').update(text).digest('hex')
const COMMIT_SHA = sha1(COMMIT)
/** Sessions whose keys one pipeline reads at open. */
const OPEN_CHUNK = 1000
/** Message ids one HMGET reads at open. */
const HMGET_CHUNK = 1000

/** The adapter's shared keys (internal: for the cluster store). */
export interface RedisKeys {
  prefix: string
  sessions: string
  msg: string
  mref: string
  retained: string
  wills: string
  msgid: string
  orphans: string
}

/** What `pipeline.exec()` resolves to: per command, its error or its reply. */
type PipelineReplies = Array<[error: Error | null, result: unknown]> | null

/** Something to reject a commit in flight with, when the connection goes. */
type Abort = (error: Error) => void

/**
 * The Redis persistence adapter: durable (every commit is in Redis's fsynced append-only file
 * before it resolves, given the configuration `open()` checks), one Lua script call per batch.
 *
 * Semantics are those of `MemoryPersistence`, operation by operation; operations on a client
 * with no session are ignored inside the script, so no stray keys are written. Subscriptions
 * come back in no particular order.
 */
export class RedisPersistence implements PersistenceAdapter {
  /** Commits survive a crash of the broker, and of Redis when it fsyncs every write (`appendfsync always`). */
  readonly durable = true
  /** The key prefix (inside the hash tag: keys are `{prefix}:...`), to reach the same store from another instance. */
  readonly prefix: string
  protected readonly options: RedisPersistenceOptions
  protected readonly keys: RedisKeys
  protected client: Redis | undefined
  private readonly inFlight = new Set<Abort>()

  /** Nothing connects until `open()`; the options are checked here. */
  constructor(options: RedisPersistenceOptions = {}) {
    const prefix = options.prefix ?? 'culex'
    if (prefix === '' || /[{}]/.test(prefix)) throw new TypeError(`RedisPersistence: prefix must be non-empty and without '{' or '}', got ${JSON.stringify(prefix)}`)
    const timeout = options.commitTimeoutMs
    if (timeout !== undefined && !(timeout > 0)) throw new RangeError('RedisPersistence: commitTimeoutMs must be positive')
    this.options = options
    this.prefix = prefix
    const p = `{${prefix}}`
    this.keys = {
      prefix: p,
      sessions: `${p}:sessions`,
      msg: `${p}:msg`,
      mref: `${p}:mref`,
      retained: `${p}:retained`,
      wills: `${p}:wills`,
      msgid: `${p}:msgid`,
      orphans: `${p}:orphans`,
    }
  }

  /**
   * Connects, checks Redis's durability settings, forgets messages no delivery took, and reads
   * everything back. Rejects when Redis cannot be reached, when ioredis is missing, or (strict)
   * when Redis does not fsync every write. May be called again after `close()`.
   */
  async open(): Promise<RestoredState> {
    if (this.client !== undefined) throw new Error('RedisPersistence is already open')
    const Redis = await loadIoredis()
    const client = this.connection(Redis)
    client.on('error', (error: Error) => log.persistence('redis: %s', error.message))
    client.on('close', () => {
      if (this.inFlight.size === 0) return
      const error = new Error('the connection to Redis was lost before it answered; the batch may or may not have been applied')
      for (const abort of [...this.inFlight]) abort(error)
    })
    try {
      await client.connect()
      await this.checkDurability(client)
      const state = await this.opened(client)
      this.client = client
      return state
    } catch (error) {
      client.disconnect()
      throw error
    }
  }

  /**
   * Applies a batch with one script call; resolves once Redis answered that it applied all of it
   * (after its fsync, with `appendfsync always`). Rejects at once when not connected, when the
   * connection drops before the answer, or after `commitTimeoutMs`; a rejected batch was applied
   * entirely or not at all.
   */
  async commit(ops: readonly PersistenceOp[]): Promise<void> {
    if (ops.length === 0) return
    await this.send(encodeBatch(ops))
  }

  /**
   * What `open()` does once connected and checked: forgets messages no delivery took, reads
   * everything back. (A cluster node's store reads less: `src/cluster/store.ts`.)
   */
  protected async opened(client: Redis): Promise<RestoredState> {
    await client.eval(FORGET_ORPHANS, 3, this.keys.msg, this.keys.mref, this.keys.orphans)
    return this.restore(client)
  }

  /** Sends one encoded batch (and, in cluster mode, its cluster header); resolves with the script's reply. */
  protected send(batch: Buffer, clusterHeader?: string): Promise<unknown> {
    const client = this.client
    if (client === undefined) return Promise.reject(new Error('RedisPersistence is not open'))
    const k = this.keys
    const args: Array<string | Buffer> = [COMMIT_SHA, '7', k.sessions, k.msg, k.mref, k.retained, k.wills, k.msgid, k.orphans, k.prefix, batch]
    if (clusterHeader !== undefined) args.push(clusterHeader)
    if (client.status !== 'ready') return Promise.reject(new Error(`Redis is not connected (${client.status}); the batch was not sent`))
    return this.run(client, args)
  }

  /** Closes the adapter's connection, after the answers to what was sent. */
  async close(): Promise<void> {
    const client = this.client
    if (client === undefined) return
    this.client = undefined
    try {
      if (client.status === 'ready') await client.quit()
    } catch {
      // Quitting a dying connection fails; disconnecting below is all that is left to do.
    }
    client.disconnect()
  }

  /** The adapter's own connection, with the settings commits rely on (see `RedisPersistenceOptions.redis`). */
  private connection(Redis: RedisConstructor): Redis {
    return connectRedis(Redis, this.options.redis, { lazyConnect: true, enableOfflineQueue: false, autoResendUnfulfilledCommands: false })
  }

  /** Sends one batch; settles on Redis's answer, a lost connection or the timeout, whichever comes first. */
  private run(client: Redis, args: Array<string | Buffer>): Promise<unknown> {
    const timeoutMs = this.options.commitTimeoutMs ?? 5000
    return new Promise<unknown>((resolve, reject) => {
      let done = false
      const abort: Abort = (error) => {
        if (done) return
        done = true
        clearTimeout(timer)
        this.inFlight.delete(abort)
        reject(error)
      }
      const timer = setTimeout(
        () => abort(new Error(`Redis did not answer a commit within ${timeoutMs} ms; the batch may or may not have been applied`)),
        timeoutMs,
      )
      this.inFlight.add(abort)
      const succeed = (reply: unknown): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        this.inFlight.delete(abort)
        resolve(reply)
      }
      client.call('evalsha', args).then(succeed, (error: Error) => {
        if (done) return
        // A restarted Redis has forgotten the script: NOSCRIPT means nothing ran, so sending the
        // source (EVAL caches it again) is safe.
        if (!error.message.startsWith('NOSCRIPT')) return abort(refused(error))
        args[0] = COMMIT
        client.call('eval', args).then(succeed, (error: Error) => abort(refused(error)))
      })
    })
  }

  /** Warns, or (strict) refuses, when Redis can lose writes it acknowledged. */
  private async checkDurability(client: Redis): Promise<void> {
    const pipeline = client.pipeline()
    for (const [name] of DURABLE_CONFIG) pipeline.config('GET', name)
    const results = (await pipeline.exec()) ?? []
    const wrong: string[] = []
    for (const [i, [name, want]] of DURABLE_CONFIG.entries()) {
      const [error, reply] = results[i] ?? [new Error('no reply')]
      if (error) {
        this.warn(
          `RedisPersistence could not check that Redis fsyncs every write before answering (CONFIG GET failed: ${error.message}). ` +
            'Unless Redis runs with appendonly yes, appendfsync always and no-appendfsync-on-rewrite no, acknowledged MQTT messages ' +
            'and subscriptions can be lost when Redis or its host crashes.',
          'CULEX_REDIS_UNCHECKED',
        )
        return
      }
      // CONFIG GET answers [name, value] (RESP2) or { name: value } (RESP3).
      const value = Array.isArray(reply) ? reply[1] : (reply as Record<string, unknown> | null)?.[name]
      if (String(value) !== want) wrong.push(`${name} is ${value === undefined ? 'unset' : String(value)} (needs ${want})`)
    }
    if (wrong.length === 0) return
    const message =
      `Redis does not fsync every write before answering: ${wrong.join(', ')}. Writes it acknowledged, and so MQTT messages ` +
      'and subscriptions the broker acknowledged, can be lost when Redis or its host crashes. Set them in redis.conf, or with ' +
      `CONFIG SET and CONFIG REWRITE.`
    if (this.options.strict === true) throw new Error(`RedisPersistence (strict) refuses to open: ${message}`)
    this.warn(message, 'CULEX_REDIS_NOT_DURABLE')
  }

  private warn(message: string, code: string): void {
    if (this.options.onWarning !== undefined) {
      this.options.onWarning(message)
      return
    }
    log.persistence(message)
    process.emitWarning(message, { code })
  }

  /** Reads everything back: the sessions and their keys in pipelines, then each message they refer to, once. */
  private async restore(client: Redis): Promise<RestoredState> {
    const k = this.keys
    const [sessions, wills, retained, msgid] = await Promise.all([
      client.hgetall(k.sessions),
      client.hgetallBuffer(k.wills),
      client.hgetallBuffer(k.retained),
      client.get(k.msgid),
    ])
    return {
      sessions: await this.readSessions(client, sessions, wills),
      retained: Object.entries(retained).map(([topic, value]) => at(() => `retained message of ${topic}`, () => decodeStoredMessage(value))),
      lastMessageId: msgid === null ? 0 : Number(msgid),
    }
  }

  /** The retained messages and the highest message id, without the sessions (a cluster node loads those it owns). */
  protected async readRetained(client: Redis): Promise<RestoredState> {
    const [retained, msgid] = await Promise.all([client.hgetallBuffer(this.keys.retained), client.get(this.keys.msgid)])
    return {
      sessions: [],
      retained: Object.entries(retained).map(([topic, value]) => at(() => `retained message of ${topic}`, () => decodeStoredMessage(value))),
      lastMessageId: msgid === null ? 0 : Number(msgid),
    }
  }

  /** The stored sessions of these client identifiers (those with no stored session are left out). */
  protected async loadSessions(client: Redis, clientIds: readonly string[]): Promise<RestoredSession[]> {
    if (clientIds.length === 0) return []
    const k = this.keys
    const [values, willValues] = await Promise.all([client.hmget(k.sessions, ...clientIds), client.hmgetBuffer(k.wills, ...clientIds)])
    const sessions: Record<string, string> = {}
    const wills: Record<string, Buffer> = {}
    clientIds.forEach((id, i) => {
      const value = values[i]
      if (value === null || value === undefined) return
      sessions[id] = value
      const will = willValues[i]
      if (will !== null && will !== undefined) wills[id] = will
    })
    return this.readSessions(client, sessions, wills)
  }

  /** Reads the sessions given by their `sessions` values: their keys in pipelines, then each message they refer to, once. */
  private async readSessions(client: Redis, sessions: Record<string, string>, wills: Record<string, Buffer>): Promise<RestoredSession[]> {
    const k = this.keys
    const restored: RestoredSession[] = []
    // Per session, its delivery values until the messages are read: [seq, value, seq, value, ...].
    const raw: Array<Array<string | number>> = []
    // Every request goes out at once and Node decodes the replies as they come, so Redis's work,
    // the transfer and the decoding overlap; each message is asked for once, as soon as a
    // delivery names it.
    const clientIds = Object.keys(sessions)
    const chunks: Array<{ ids: string[]; replies: Promise<PipelineReplies> }> = []
    for (let start = 0; start < clientIds.length; start += OPEN_CHUNK) {
      const ids = clientIds.slice(start, start + OPEN_CHUNK)
      const pipeline = client.pipeline()
      for (const id of ids) {
        pipeline.hgetall(`${k.prefix}:subs:${id}`)
        pipeline.hgetall(`${k.prefix}:d:${id}`)
        pipeline.smembers(`${k.prefix}:q2:${id}`)
      }
      chunks.push({ ids, replies: settled(pipeline.exec()) })
    }
    const asked = new Set<number>()
    const fetches: Array<{ ids: number[]; replies: Promise<PipelineReplies> }> = []
    const fetch = (ids: number[]): void => {
      const pipeline = client.pipeline()
      for (let start = 0; start < ids.length; start += HMGET_CHUNK) pipeline.hmgetBuffer(k.msg, ...ids.slice(start, start + HMGET_CHUNK).map(String))
      fetches.push({ ids, replies: settled(pipeline.exec()) })
    }
    for (const chunk of chunks) {
      const replies = (await chunk.replies) ?? []
      const reply = (n: number): unknown => {
        const [error, value] = replies[n] ?? [new Error('no reply')]
        if (error) throw error
        return value
      }
      const newIds: number[] = []
      chunk.ids.forEach((clientId, j) => {
        const subs = reply(j * 3) as Record<string, string>
        const deliveries = reply(j * 3 + 1) as Record<string, string>
        const qos2 = reply(j * 3 + 2) as string[]
        const meta = at(() => `session ${clientId}`, () => decodeSession(sessions[clientId] as string))
        const session: RestoredSession = {
          clientId,
          expiryInterval: meta.expiryInterval,
          subscriptions: Object.keys(subs).map((filter) => at(() => `subscription ${filter} of ${clientId}`, () => decodeSubscription(filter, subs[filter] as string))),
          deliveries: [],
          incomingQos2: qos2.map(Number).sort((a, b) => a - b),
        }
        if (meta.disconnectedAt !== undefined) session.disconnectedAt = meta.disconnectedAt
        const will = wills[clientId]
        if (will !== undefined) {
          const decoded = at(() => `will of ${clientId}`, () => decodeMessage(will))
          session.will = decoded.publishAt === undefined ? { message: decoded.message } : { message: decoded.message, publishAt: decoded.publishAt }
        }
        const pairs: Array<string | number> = []
        for (const seq in deliveries) {
          const value = deliveries[seq] as string
          pairs.push(Number(seq), value)
          const id = deliveryMessageId(value)
          if (!asked.has(id)) {
            asked.add(id)
            newIds.push(id)
          }
        }
        restored.push(session)
        raw.push(pairs)
      })
      if (newIds.length > 0) fetch(newIds)
    }

    const messages = new Map<number, StoredMessage>()
    for (const { ids, replies } of fetches) {
      let n = 0
      for (const [error, values] of (await replies) ?? []) {
        if (error) throw error
        for (const value of values as Array<Buffer | null>) {
          const id = ids[n++] as number
          if (value === null) continue
          try {
            messages.set(id, decodeStoredMessage(value))
          } catch (error) {
            throw unreadable(`message ${id}`, error)
          }
        }
      }
    }
    let missing = 0
    restored.forEach((session, j) => {
      const pairs = raw[j] as Array<string | number>
      for (let i = 0; i < pairs.length; i += 2) {
        const value = pairs[i + 1] as string
        const message = messages.get(deliveryMessageId(value))
        if (message === undefined) {
          missing++
          continue
        }
        try {
          session.deliveries.push(decodeDelivery(pairs[i] as number, value, message))
        } catch (error) {
          throw unreadable(`delivery ${pairs[i]} of ${session.clientId}`, error)
        }
      }
      // Hash order is arbitrary (V8 happens to list integer keys in order, but that is not a promise).
      session.deliveries.sort((a, b) => a.seq - b.seq)
    })
    if (missing > 0) {
      this.warn(`RedisPersistence: ${missing} stored deliveries refer to messages that are not stored; they were skipped`, 'CULEX_REDIS_INCONSISTENT')
    }

    return restored
  }
}

/** A stored value that is not what this adapter writes: open() fails, saying where it is. */
function unreadable(where: string, error: unknown): Error {
  return new Error(`RedisPersistence cannot read the ${where}: ${(error as Error).message}`, { cause: error })
}

/** Decodes one of the rarer stored values (sessions, subscriptions, wills, retained messages), see `unreadable`. */
function at<T>(where: () => string, decode: () => T): T {
  try {
    return decode()
  } catch (error) {
    throw unreadable(where(), error)
  }
}

/** The promise, marked as handled: restore() awaits them in order and stops at the first failure, and the later ones must not then count as unhandled rejections. */
function settled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined)
  return promise
}

/**
 * Redis's error, without the command ioredis attaches to it (the whole batch, and on EVAL the
 * script's source), which would flood whatever logs the rejection.
 */
function refused(error: Error): Error {
  return new Error(`Redis refused the commit: ${error.message}`)
}

