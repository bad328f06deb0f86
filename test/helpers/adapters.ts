import type { PersistenceAdapter, PersistenceOp, RestoredState, StoredMessage } from '../../src/index.js'
import { MemoryPersistence } from '../../src/index.js'
import type { Subscription } from '../../src/index.js'
import { nextTurn } from './wait.js'

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
