/**
 * A cluster node numbers stored messages in blocks the cluster hands out (SessionStore's
 * messageIdBlock): it asks for the next block before the current one runs out, and moves to it
 * when it does, so no identifier is used twice and none outside a block it was given.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { DEFAULT_LIMITS } from '../../src/options.js'
import type { PersistenceOp } from '../../src/persistence/adapter.js'
import { Journal } from '../../src/persistence/journal.js'
import { RoutedMessage } from '../../src/session/routed-message.js'
import { Session } from '../../src/session/session.js'
import { SessionStore } from '../../src/session/session-store.js'

test('message identifiers come from the blocks given, the next one asked for before the current one runs out', () => {
  const committed: PersistenceOp[] = []
  const journal = new Journal({ durable: true, open: () => ({ sessions: [], retained: [] }), commit: (ops) => void committed.push(...ops), close: () => {} }, () => {})
  const store = new SessionStore(journal)
  const session = new Session('c', true, DEFAULT_LIMITS)
  let asked = 0
  const more = (): void => {
    asked++
  }
  store.messageIdBlock(100, 3, more)
  const ids: number[] = []
  const store1 = (): void => {
    const message = new RoutedMessage('t', Buffer.from('x'), 1, false)
    store.enqueued(session, ids.length, message, 1, false, undefined, undefined)
    ids.push(message.storeId)
  }
  store1()
  assert.equal(asked, 1, 'the next block is asked for once the current one runs low')
  store1()
  // The next block arrives while the current one still has room: it is kept for later.
  store.messageIdBlock(500, 3, more)
  store1()
  store1()
  store1()
  assert.deepEqual(ids, [100, 101, 102, 500, 501])
  assert.equal(asked, 2, 'asked again on the new block')
})
