/**
 * The memory adapter against the persistence conformance suite, as it is (synchronous) and behind
 * promises, which also shows the suite handles async adapters.
 */
import { MemoryPersistence, type PersistenceAdapter } from '../../src/index.js'
import { persistenceConformance } from './conformance.js'

persistenceConformance('MemoryPersistence', () => new MemoryPersistence())

/** Wraps an adapter so every method answers on a later turn of the event loop, as a durable one would. */
function later(inner: PersistenceAdapter): PersistenceAdapter {
  const defer = <T>(f: () => T | Promise<T>): Promise<T> => new Promise((resolve) => setImmediate(resolve)).then(f)
  return {
    storeRetained: (message) => defer(() => inner.storeRetained(message)),
    matchRetained: (filter) => defer(() => inner.matchRetained(filter)),
    saveSession: (record) => defer(() => inner.saveSession(record)),
    deleteSession: (clientId) => defer(() => inner.deleteSession(clientId)),
    loadSessions: () => defer(() => inner.loadSessions()),
    close: () => defer(() => inner.close()),
  }
}

persistenceConformance('MemoryPersistence behind promises', async () => later(new MemoryPersistence()))
