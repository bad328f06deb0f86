import type { PersistenceAdapter, PersistenceOp, RestoredState, StoredMessage } from '../../src/index.js'
import { MemoryPersistence } from '../../src/index.js'
import type { Subscription } from '../../src/index.js'
import { deferred, nextTurn } from './wait.js'

/** An adapter that passes everything to `inner` but what `overrides` replaces (a slow open, a stuck commit ...). */
export function wrapAdapter(inner: PersistenceAdapter, overrides: Partial<PersistenceAdapter> & { durable?: boolean }): PersistenceAdapter {
  return {
    durable: overrides.durable ?? inner.durable,
    open: overrides.open ?? (() => inner.open()),
    commit: overrides.commit ?? ((ops) => inner.commit(ops)),
    close: overrides.close ?? (() => inner.close()),
  }
}

/** What a memory adapter holds once the broker's last batch is committed (it commits at the end of the turn). */
export async function storedState(memory: MemoryPersistence): Promise<RestoredState> {
  await nextTurn()
  return memory.open()
}

/** The retained messages a memory adapter holds whose topic starts with `prefix`. */
export async function storedRetained(memory: MemoryPersistence, prefix = ''): Promise<StoredMessage[]> {
  return (await storedState(memory)).retained.filter((m) => m.topic.startsWith(prefix))
}

let seeded = 1_000_000

/** Commits a persistent session with subscriptions and queued QoS 1/2 messages, as an earlier run would have left it. */
export function seedSession(memory: MemoryPersistence, clientId: string, subscriptions: Subscription[], queue: Array<StoredMessage & { qos: 1 | 2 }> = []): void {
  const ops: PersistenceOp[] = [{ op: 'sessionCreate', clientId, expiryInterval: 0xffffffff }]
  for (const subscription of subscriptions) ops.push({ op: 'subscribe', clientId, subscription })
  let seq = 1
  for (const message of queue) {
    const messageId = ++seeded
    ops.push({ op: 'message', messageId, message })
    ops.push({ op: 'enqueue', clientId, seq: seq++, messageId, qos: message.qos, retain: message.retain })
  }
  memory.commit(ops)
}

/** A durable store whose commits the test can hold (they wait), release, or make fail. */
export class GatedStore {
  readonly memory = new MemoryPersistence()
  readonly adapter: PersistenceAdapter
  /** Every batch committed, in order. */
  readonly committed: PersistenceOp[][] = []
  private held: Array<{ ops: readonly PersistenceOp[]; done: (error?: Error) => void }> = []
  private holding = false
  private failure: { error: Error; mode: 'throw' | 'reject' } | undefined
  private arrived = deferred<void>()

  constructor() {
    this.adapter = wrapAdapter(this.memory, {
      durable: true,
      commit: (ops) => {
        if (this.failure !== undefined) {
          if (this.failure.mode === 'throw') throw this.failure.error
          return Promise.reject(this.failure.error)
        }
        if (!this.holding) return this.apply(ops)
        return new Promise<void>((resolve, reject) => {
          this.held.push({ ops, done: (error) => (error ? reject(error) : resolve(this.apply(ops))) })
          this.arrived.resolve()
        })
      },
    })
  }

  private apply(ops: readonly PersistenceOp[]): void {
    this.committed.push([...ops])
    this.memory.commit(ops)
  }

  hold(): void {
    this.holding = true
    this.arrived = deferred<void>()
  }

  /** Resolves once a commit is waiting at the gate; returns its operations. */
  async waiting(): Promise<readonly PersistenceOp[]> {
    await this.arrived.promise
    return this.held.flatMap((h) => h.ops)
  }

  release(): void {
    this.holding = false
    this.releaseHeld()
  }

  /** Lets the commits waiting now through, and keeps holding the next ones. */
  releaseHeld(): void {
    for (const h of this.held.splice(0)) h.done()
  }

  fail(mode: 'throw' | 'reject'): void {
    this.failure = { error: new Error('disk on fire'), mode }
  }

  heal(): void {
    this.failure = undefined
  }
}

