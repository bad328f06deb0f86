/**
 * An adapter that fails, by throwing or by rejecting, is logged and never takes the broker or
 * the host process down: clients go on being served.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MemoryPersistence, type PersistenceAdapter } from '../../src/index.js'
import { nextTurn, once, ping, startBroker } from '../helpers/index.js'

function failing(mode: 'throw' | 'reject'): PersistenceAdapter {
  const memory = new MemoryPersistence()
  const fail = (): never => {
    throw new Error('disk on fire')
  }
  const broken = <T>(): T | Promise<T> => (mode === 'throw' ? fail() : Promise.reject(new Error('disk on fire')))
  return {
    storeRetained: () => broken(),
    matchRetained: () => broken(),
    saveSession: () => broken(),
    deleteSession: () => broken(),
    loadSessions: () => memory.loadSessions(),
    close: () => memory.close(),
  }
}

for (const mode of ['throw', 'reject'] as const) {
  test(`an adapter whose calls ${mode} does not crash the process; wills, retained and sessions just go unstored`, async () => {
    const crashes: unknown[] = []
    const onCrash = (error: unknown): void => {
      crashes.push(error)
    }
    process.on('uncaughtException', onCrash)
    process.on('unhandledRejection', onCrash)
    const b = await startBroker({ persistence: failing(mode) })
    try {
      const watcher = await b.connect({ clientId: 'watcher' })
      await watcher.subscribeAsync('#')
      // A persistent client with a retained will, whose socket drops: the will is stored as
      // retained (fails) from inside the socket's close handler.
      const doomed = await b.connect({ clientId: 'doomed', clean: false, will: { topic: 'wills/doomed', payload: Buffer.from('gone'), qos: 1, retain: true } })
      await doomed.subscribeAsync('x')
      const will = once<[string, Buffer]>(watcher, 'message')
      doomed.stream.destroy()
      const [topic] = await will
      assert.equal(topic, 'wills/doomed')
      // Retained publish and a new subscription (matchRetained fails) still work for routing.
      const other = await b.connect({ clientId: 'other' })
      const live = once<[string, Buffer]>(watcher, 'message')
      await other.publishAsync('news', 'still here', { qos: 1, retain: true })
      assert.equal((await live)[1].toString(), 'still here')
      await other.subscribeAsync('news')
      // The broker has handled the SUBSCRIBE (and called matchRetained) before the PINGRESP; a
      // rejection left unhandled is reported before the next turn, which also runs any session
      // save the broker had scheduled.
      await ping(other)
      await nextTurn()
      assert.deepEqual(crashes, [])
    } finally {
      await b.close()
      process.off('uncaughtException', onCrash)
      process.off('unhandledRejection', onCrash)
    }
  })
}
