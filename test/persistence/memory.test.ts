/**
 * The memory adapter against the persistence conformance suite (restarted as the same instance, the
 * only way it can be; no failure injection, no kill -9: it keeps nothing past its process), then
 * what only the memory adapter promises: it holds the broker's own objects, and lets a message go
 * with its last delivery.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { PersistenceOp, StoredMessage } from '../../src/persistence/adapter.js'
import { MemoryPersistence } from '../../src/persistence/memory.js'
import type { WillMessage } from '../../src/protocol/packets.js'
import { crashBatch, crashExpected } from '../../src/testing/crash.js'
import { persistenceConformance, plainState } from '../../src/testing/index.js'

persistenceConformance('MemoryPersistence', { create: () => new MemoryPersistence() })

const message = (topic: string, retain = false): StoredMessage => ({ topic, payload: Buffer.from(topic), qos: 1, retain, receivedAt: 1_700_000_000_000 })

describe('MemoryPersistence', () => {
  it('keeps the very objects it was given (messages, retained messages, wills), never copies', () => {
    const adapter = new MemoryPersistence()
    adapter.open()
    const queued = message('queued')
    const retained = message('retained', true)
    const will: WillMessage = { topic: 'will', payload: Buffer.from('bye'), qos: 0, retain: false }
    adapter.commit([
      { op: 'sessionCreate', clientId: 'c', expiryInterval: 60 },
      { op: 'message', messageId: 1, message: queued },
      { op: 'enqueue', clientId: 'c', seq: 1, messageId: 1, qos: 1, retain: false },
      { op: 'retain', message: retained },
      { op: 'will', clientId: 'c', will, publishAt: 5 },
    ])
    adapter.close()
    const state = adapter.open()
    const c = state.sessions[0]
    assert.ok(c !== undefined)
    assert.equal(c.deliveries[0]?.message, queued, 'the delivery holds the committed message object')
    assert.equal(state.retained[0], retained, 'the retained message is the committed object')
    assert.equal(c.will?.message, will, 'the will is the committed object')
  })

  it('lets a message go at the end of the batch that removed its last delivery: an enqueue naming it later finds nothing', () => {
    // Nothing private is read: a message the adapter still holds can be enqueued again by its id
    // (the adapter answers an enqueue of an unknown id by ignoring it), one it let go cannot.
    const adapter = new MemoryPersistence()
    adapter.open()
    const enqueue = (clientId: string, seq: number, messageId: number): PersistenceOp => ({ op: 'enqueue', clientId, seq, messageId, qos: 1, retain: false })
    const seqs = (): Record<string, number[]> => Object.fromEntries(adapter.open().sessions.map((s) => [s.clientId, s.deliveries.map((d) => d.seq)]))
    adapter.commit([
      { op: 'sessionCreate', clientId: 'a', expiryInterval: 60 },
      { op: 'sessionCreate', clientId: 'b', expiryInterval: 60 },
      { op: 'message', messageId: 1, message: message('shared') },
      { op: 'message', messageId: 2, message: message('dropped with its session') },
      enqueue('a', 1, 1),
      enqueue('b', 1, 1),
      enqueue('b', 2, 2),
    ])

    adapter.commit([{ op: 'dequeue', clientId: 'a', seq: 1 }, enqueue('a', 2, 1)])
    assert.deepEqual(seqs(), { a: [2], b: [1, 2] }, "b's delivery still holds message 1: it can be enqueued again")

    // Within a batch, a delivery may take over a message whose last delivery went earlier in it
    // (a shared subscription handing a message on): it is let go only at the end of the batch.
    adapter.commit([{ op: 'dequeue', clientId: 'a', seq: 2 }, { op: 'dequeue', clientId: 'b', seq: 1 }, enqueue('a', 3, 1)])
    assert.deepEqual(seqs(), { a: [3], b: [2] }, 'message 1 taken over within the batch')

    adapter.commit([{ op: 'dequeue', clientId: 'a', seq: 3 }])
    adapter.commit([enqueue('a', 4, 1)])
    assert.deepEqual(seqs(), { a: [], b: [2] }, 'message 1 went with its last delivery, at the end of that batch')

    adapter.commit([{ op: 'sessionDelete', clientId: 'b' }])
    adapter.commit([enqueue('a', 5, 2)])
    assert.deepEqual(seqs(), { a: [] }, 'message 2 went with the session holding its last delivery')
  })

  it("the crash test's batches leave, after each one, the state the crash test expects of it", () => {
    // The kill -9 test (durable adapters only) compares what a killed child left with
    // crashExpected(n): checked here against the reference adapter, batch after batch.
    const adapter = new MemoryPersistence()
    assert.deepEqual(plainState(adapter.open()), plainState(crashExpected(0)))
    for (let n = 1; n <= 20; n++) {
      adapter.commit(crashBatch(n))
      assert.deepEqual(plainState(adapter.open()), plainState(crashExpected(n)), `after batch ${n}`)
    }
  })
})
