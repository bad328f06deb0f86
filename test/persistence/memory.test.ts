/**
 * The memory adapter against the persistence conformance suite, as it is (synchronous) and behind
 * promises that answer on later turns of the event loop, each call after its own (seeded,
 * pseudo-random) number of turns: overlapping calls then complete, and take effect, out of the
 * order they were made, as they may with a durable adapter. The suite awaits each call before
 * the next, except where it overlaps calls on purpose; the wrapper shows it handles async
 * adapters, and that overlapping calls on different keys need no ordering.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MemoryPersistence, type PersistenceAdapter } from '../../src/index.js'
import { nextTurn } from '../helpers/index.js'
import { persistenceConformance } from './conformance.js'

persistenceConformance('MemoryPersistence', () => new MemoryPersistence())

/** Wraps an adapter so every call is made on the inner one, and answered, 0 to 3 turns later. */
function later(inner: PersistenceAdapter, seed = 1): PersistenceAdapter {
  let state = seed
  const turns = (): number => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31
    return state % 4
  }
  const defer = async <T>(f: () => T | Promise<T>): Promise<T> => {
    for (let n = turns(); n > 0; n--) await nextTurn()
    return f()
  }
  return {
    storeRetained: (message) => defer(() => inner.storeRetained(message)),
    matchRetained: (filter) => defer(() => inner.matchRetained(filter)),
    saveSession: (record) => defer(() => inner.saveSession(record)),
    deleteSession: (clientId) => defer(() => inner.deleteSession(clientId)),
    loadSessions: () => defer(() => inner.loadSessions()),
    close: () => defer(() => inner.close()),
  }
}

persistenceConformance('MemoryPersistence behind promises, answering in any order', async () => later(new MemoryPersistence()))

test('the wrapper above really reorders: overlapping calls reach the inner adapter out of issue order', async () => {
  const inner = new MemoryPersistence()
  const applied: string[] = []
  const store = inner.storeRetained.bind(inner)
  inner.storeRetained = (message) => {
    applied.push(message.topic)
    return store(message)
  }
  const adapter = later(inner)
  const topics = Array.from({ length: 8 }, (_, i) => `t/${i}`)
  await Promise.all(topics.map((topic) => adapter.storeRetained({ topic, payload: Buffer.from(topic), qos: 0, retain: true, receivedAt: 0 })))
  assert.deepEqual([...applied].sort(), topics, 'every call reached the adapter')
  assert.notDeepEqual(applied, topics, 'the calls were applied in issue order')
})
