/**
 * RedisPersistence against redis-server processes of the test's own (`startRedis`): the
 * persistence conformance suite (kill -9 test included), then what is particular to Redis:
 * equivalence with MemoryPersistence on random batches and the consistency of the keys behind it,
 * batches refused whole, bulk batches and restores, constant AOF bytes per message, the
 * durability check at open, a Redis that stops, hangs, or is killed with SIGKILL, a missing
 * ioredis, and the ways to name the server.
 *
 * Without redis-server the tests are skipped (and fail under CI=true). This file is also the
 * conformance suite's kill -9 child when started with `--redis-crash-child <url> <prefix>`.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { Redis } from 'ioredis'
import type { PersistenceOp, RestoredState, StoredMessage } from '../../src/persistence/adapter.js'
import { MemoryPersistence } from '../../src/persistence/memory.js'
import { RedisPersistence } from '../../src/persistence/redis.js'
import type { QoS, Subscription, WillMessage } from '../../src/protocol/packets.js'
import { crashBatch, crashExpected, crashLastBatch, runCrashChild } from '../../src/testing/crash.js'
import { persistenceConformance } from '../../src/testing/persistence-conformance.js'
import { assertSameState } from '../../src/testing/state.js'
import { skipRedis, startRedis, type RedisServer } from '../helpers/redis-server.js'
import { realTimer, until } from '../helpers/wait.js'

const CRASH_CHILD = '--redis-crash-child'
const T0 = 1_700_000_000_000

if (process.argv[2] === CRASH_CHILD) {
  const [url, prefix] = process.argv.slice(3)
  await runCrashChild(() => new RedisPersistence({ redis: url!, prefix: prefix! }))
} else {
  const skip = skipRedis()
  if (skip !== undefined) describe('RedisPersistence', { skip }, () => it('needs redis-server'))
  else tests()
}

function tests(): void {
  /** The server most tests share; tests that stop, kill or reconfigure Redis start their own. */
  let server: RedisServer
  /** A plain client of the shared server, to look at keys and configure Redis. */
  let admin: Redis
  before(async () => {
    server = await startRedis()
    admin = new Redis(server.port, '127.0.0.1')
  })
  after(async () => {
    admin?.disconnect()
    await server?.dispose()
  })

  let prefixes = 0
  /** A fresh store on the shared server: every test its own prefix. */
  const freshPrefix = (): string => `t${++prefixes}`
  /** An adapter on the shared server that fails the test on any warning (the server is durable). */
  const adapterOn = (prefix: string, options: { commitTimeoutMs?: number } = {}): RedisPersistence =>
    new RedisPersistence({
      redis: server.url,
      prefix,
      onWarning: (message) => assert.fail(`unexpected warning: ${message}`),
      ...options,
    })
  const dropPrefix = async (prefix: string): Promise<void> => {
    const keys = await keysOf(admin, prefix)
    for (let i = 0; i < keys.length; i += 500) await admin.del(...keys.slice(i, i + 500))
  }

  persistenceConformance('RedisPersistence', {
    create: () => adapterOn(freshPrefix()),
    reopen: (adapter) => adapterOn((adapter as RedisPersistence).prefix),
    // Redis then refuses every write ("NOREPLICAS"), checked at the script's first write, so it
    // also shows that the script writes nothing before it knows the whole batch will apply.
    breakStore: async () => {
      await admin.config('SET', 'min-replicas-to-write', '1')
      return async () => {
        await admin.config('SET', 'min-replicas-to-write', '0')
      }
    },
    crashChild: {
      module: new URL(import.meta.url),
      store: () => {
        const prefix = freshPrefix()
        return { args: [CRASH_CHILD, server.url, prefix], adapter: () => adapterOn(prefix), dispose: () => dropPrefix(prefix) }
      },
    },
    cleanup: (adapter) => dropPrefix((adapter as RedisPersistence).prefix),
  })

  describe('RedisPersistence', () => {
    it('equals MemoryPersistence on random batches (each committed once or twice, as a retrying broker does), reopened after each; its keys stay consistent', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(fc.array(opArbitrary, { minLength: 1, maxLength: 15 }), fc.boolean()), { minLength: 1, maxLength: 8 }), async (batches) => {
          const prefix = freshPrefix()
          const memory = new MemoryPersistence()
          memory.open()
          let redis = adapterOn(prefix)
          await redis.open()
          // The messages the broker knows: those it stored since it started, and those of the
          // deliveries it restored. It cannot enqueue another (RedisPersistence forgets, at open,
          // messages no delivery took; MemoryPersistence keeps them, unseen): such enqueues are dropped.
          let known = new Set<number>()
          // And a session's seqs only grow (MemoryPersistence keeps deliveries in the order they came).
          const lastSeq = new Map<string, number>()
          try {
            for (const [n, [generated, twice]] of batches.entries()) {
              const ops = generated.filter((op) => {
                if (op.op === 'message') known.add(op.messageId)
                if (op.op === 'sessionCreate' || op.op === 'sessionDelete') lastSeq.delete(op.clientId)
                if (op.op !== 'enqueue') return true
                if (!known.has(op.messageId) || op.seq < (lastSeq.get(op.clientId) ?? 0)) return false
                lastSeq.set(op.clientId, op.seq)
                return true
              })
              for (let k = twice ? 2 : 1; k > 0; k--) {
                memory.commit(ops)
                await redis.commit(ops)
              }
              await redis.close()
              redis = adapterOn(prefix)
              const restored = await redis.open()
              const expected = memory.open()
              assertSameState(restored, expected, `after batch ${n + 1}`)
              assert.equal(restored.lastMessageId, expected.lastMessageId, `lastMessageId after batch ${n + 1}`)
              await assertConsistentKeys(admin, prefix)
              known = new Set(restored.sessions.flatMap((s) => s.deliveries.map((d) => d.messageId)))
            }
          } finally {
            await redis.close()
            await dropPrefix(prefix)
          }
        }),
        { numRuns: 40 },
      )
    })

    it('writes every key under the hash tag {prefix}, so that one script may touch them all (and Redis Cluster would keep them in one slot)', async () => {
      const prefix = freshPrefix()
      const adapter = adapterOn(prefix)
      await adapter.open()
      try {
        await adapter.commit(crashBatch(1))
        await adapter.commit(crashBatch(2))
        const keys = await keysOf(admin, prefix)
        assert.ok(keys.length >= 8, `keys written: ${keys.join(', ')}`)
        for (const key of keys) assert.ok(key.startsWith(`{${prefix}}:`), `${key} is under {${prefix}}`)
        const all = await admin.keys('*')
        assert.deepEqual(all.filter((key) => key.includes(prefix)).sort(), [...keys].sort(), 'no key of this store outside the tag')
      } finally {
        await adapter.close()
        await dropPrefix(prefix)
      }
    })

    describe('a batch is applied whole or not at all', () => {
      // A key of the batch holding another type (something else wrote into the store) makes a
      // command fail: found in the script's checks (a key it writes unread) or its reads (a key
      // it reads before writing), before its first write either way.
      for (const [key, kind, refusal] of [
        ['subs:c', 'written without being read', /key \{t\d+\}:subs:c holds a string, not a hash; the batch was not applied/],
        ['d:b', 'read first', /key \{t\d+\}:d:b: WRONGTYPE .*; the batch was not applied/],
      ] as const) {
        it(`a batch touching a key of the wrong type (${kind}) is refused before any write, naming the key; with the key repaired it applies`, async () => {
          const prefix = freshPrefix()
          const adapter = adapterOn(prefix)
          const first: PersistenceOp[] = [{ op: 'sessionCreate', clientId: 'a', expiryInterval: 1 }, ...fullOps('a', 1)]
          const batch: PersistenceOp[] = [
            { op: 'sessionCreate', clientId: 'c', expiryInterval: 5 },
            ...fullOps('a', 2),
            { op: 'retain', message: message('r/1', 7) },
            { op: 'sessionCreate', clientId: 'b', expiryInterval: 5 },
            { op: 'message', messageId: 99, message: message('m/99', 99) },
            { op: 'enqueue', clientId: 'b', seq: 1, messageId: 99, qos: 1, retain: false },
            { op: 'subscribe', clientId: 'c', subscription: { topicFilter: 'c/#', qos: 1 } },
          ]
          await adapter.open()
          try {
            await adapter.commit(first)
            await adapter.close()
            const before = await reopenState(adapterOn(prefix))
            await adapter.open()
            await admin.set(`{${prefix}}:${key}`, 'not a hash')
            await assert.rejects(adapter.commit(batch), refusal)
            await adapter.close()
            assertSameState(await reopenState(adapterOn(prefix)), before, 'nothing of the refused batch')
            await admin.del(`{${prefix}}:${key}`)
            await adapter.open()
            await adapter.commit(batch)
            const memory = new MemoryPersistence()
            memory.open()
            memory.commit(first)
            memory.commit(batch)
            await adapter.close()
            assertSameState(await reopenState(adapterOn(prefix)), memory.open(), 'the batch, once repaired')
          } finally {
            await adapter.close()
            await dropPrefix(prefix)
          }
        })
      }

      it('an operation the adapter cannot store is refused before anything is sent', async () => {
        const prefix = freshPrefix()
        const adapter = adapterOn(prefix)
        await adapter.open()
        try {
          const bad = { op: 'enqueue', clientId: 'a', seq: 1.5, messageId: 1, qos: 1, retain: false } as PersistenceOp
          await assert.rejects(adapter.commit([{ op: 'sessionCreate', clientId: 'a', expiryInterval: 1 }, bad]), TypeError)
          await assert.rejects(adapter.commit([{ op: 'bogus' } as unknown as PersistenceOp]), /an unknown operation/)
          assert.deepEqual(await keysOf(admin, prefix), [], 'no key written')
        } finally {
          await adapter.close()
        }
      })
    })

    it('a message whose last delivery is dequeued stays for a later operation of the same batch, and goes at its end otherwise', async () => {
      const prefix = freshPrefix()
      const adapter = adapterOn(prefix)
      await adapter.open()
      try {
        await adapter.commit([
          { op: 'sessionCreate', clientId: 'a', expiryInterval: 1 },
          { op: 'sessionCreate', clientId: 'b', expiryInterval: 1 },
          { op: 'message', messageId: 1, message: message('handed/over', 1) },
          { op: 'message', messageId: 2, message: message('dropped', 2) },
          { op: 'enqueue', clientId: 'a', seq: 1, messageId: 1, qos: 2, retain: false, shareGroup: '$share/g/handed/+' },
          { op: 'enqueue', clientId: 'a', seq: 2, messageId: 2, qos: 1, retain: false },
        ])
        // Handed from a to b after a's delivery (its last) went; message 2 loses its last delivery for good.
        await adapter.commit([
          { op: 'dequeue', clientId: 'a', seq: 1 },
          { op: 'dequeue', clientId: 'a', seq: 2 },
          { op: 'enqueue', clientId: 'b', seq: 1, messageId: 1, qos: 2, retain: false, shareGroup: '$share/g/handed/+' },
        ])
        assert.deepEqual(await admin.hkeys(`{${prefix}}:msg`), ['1'])
        await adapter.close()
        const state = await adapter.open()
        assert.deepEqual(
          state.sessions.map((s) => [s.clientId, s.deliveries.map((d) => [d.seq, d.messageId, d.message.topic])]).sort(),
          [
            ['a', []],
            ['b', [[1, 1, 'handed/over']]],
          ],
        )
        await assertConsistentKeys(admin, prefix)
      } finally {
        await adapter.close()
        await dropPrefix(prefix)
      }
    })

    it('open() forgets messages that no delivery took (all their enqueues were for clients without a session), and only those', async () => {
      const prefix = freshPrefix()
      const adapter = adapterOn(prefix)
      await adapter.open()
      try {
        await adapter.commit([
          { op: 'sessionCreate', clientId: 'a', expiryInterval: 1 },
          { op: 'message', messageId: 1, message: message('kept', 1) },
          { op: 'message', messageId: 2, message: message('nobody took it', 2) },
          { op: 'enqueue', clientId: 'a', seq: 1, messageId: 1, qos: 1, retain: false },
          { op: 'enqueue', clientId: 'ghost', seq: 1, messageId: 2, qos: 1, retain: false },
        ])
        // A later batch may still queue a message stored earlier: message 3 is taken in the next batch.
        await adapter.commit([{ op: 'message', messageId: 3, message: message('taken later', 3) }])
        await adapter.commit([{ op: 'enqueue', clientId: 'a', seq: 2, messageId: 3, qos: 2, retain: false }])
        assert.deepEqual((await admin.hkeys(`{${prefix}}:msg`)).sort(), ['1', '2', '3'])
        assert.deepEqual(await admin.smembers(`{${prefix}}:orphans`), ['2'])
        await adapter.close()
        const state = await adapter.open()
        assert.deepEqual(
          state.sessions[0]?.deliveries.map((d) => d.messageId),
          [1, 3],
        )
        assert.equal(state.lastMessageId, 3)
        assert.deepEqual((await admin.hkeys(`{${prefix}}:msg`)).sort(), ['1', '3'], 'message 2 forgotten')
        assert.equal(await admin.exists(`{${prefix}}:orphans`), 0)
      } finally {
        await adapter.close()
        await dropPrefix(prefix)
      }
    })

    it('bulk: 3,000 deliveries in one batch, a clean start dropping them in another, and 1,500 sessions read back (more than one pipeline of each)', async () => {
      const prefix = freshPrefix()
      const adapter = adapterOn(prefix)
      const memory = new MemoryPersistence()
      memory.open()
      const commit = async (ops: PersistenceOp[]): Promise<void> => {
        memory.commit(ops)
        await adapter.commit(ops)
      }
      await adapter.open()
      try {
        const big: PersistenceOp[] = [{ op: 'sessionCreate', clientId: 'big', expiryInterval: 9 }]
        for (let i = 1; i <= 3000; i++) {
          big.push({ op: 'message', messageId: i, message: message(`big/${i}`, i) })
          big.push({ op: 'enqueue', clientId: 'big', seq: i, messageId: i, qos: 1, retain: false })
          if (i % 3 === 0) big.push({ op: 'sent', clientId: 'big', seq: i, packetId: (i % 65_535) + 1 })
        }
        await commit(big)
        const sessions: PersistenceOp[] = []
        for (let c = 0; c < 1500; c++) {
          const clientId = `s${c}`
          sessions.push({ op: 'sessionCreate', clientId, expiryInterval: c })
          sessions.push({ op: 'subscribe', clientId, subscription: { topicFilter: `s/${c}/#`, qos: 1 } })
          sessions.push({ op: 'enqueue', clientId, seq: 1, messageId: (c % 3000) + 1, qos: 2, retain: false })
          sessions.push({ op: 'qos2Received', clientId, packetId: (c % 100) + 1 })
          if (c % 2 === 0) sessions.push({ op: 'will', clientId, will: will(clientId), publishAt: T0 + c })
        }
        await commit(sessions)
        await adapter.close()
        assertSameState(await reopenState(adapterOn(prefix)), memory.open(), 'after the bulk batches')
        await adapter.open()
        // A clean start of 'big': its 3,000 deliveries go, and the messages the 1,500 sessions hold stay.
        await commit([{ op: 'sessionCreate', clientId: 'big', expiryInterval: 1 }])
        await adapter.close()
        assertSameState(await reopenState(adapterOn(prefix)), memory.open(), 'after the clean start')
        await assertConsistentKeys(admin, prefix)
      } finally {
        await adapter.close()
        await dropPrefix(prefix)
      }
    })

    it('the AOF grows by the same bytes, and Redis runs the same commands, per message with 30,000 messages queued as with none', async () => {
      const own = await startRedis({ args: ['--auto-aof-rewrite-percentage', '0'] })
      const client = new Redis(own.port, '127.0.0.1')
      const adapter = new RedisPersistence({ redis: own.url })
      try {
        await adapter.open()
        await adapter.commit([{ op: 'sessionCreate', clientId: 'offline', expiryInterval: 60 }])
        // Ids of a constant width, so that every message's bytes are the same.
        let next = 1_000_000
        const batch = (pairs: number): PersistenceOp[] => {
          const ops: PersistenceOp[] = []
          for (let i = 0; i < pairs; i++) {
            const id = next++
            ops.push({ op: 'message', messageId: id, message: { topic: 'sensors/1/temp', payload: Buffer.alloc(64, 1), qos: 1, retain: false, receivedAt: T0 } })
            ops.push({ op: 'enqueue', clientId: 'offline', seq: id, messageId: id, qos: 1, retain: false })
          }
          return ops
        }
        const measure = async (): Promise<{ bytes: number; commands: number }> => {
          const [aof, stats] = await Promise.all([client.info('persistence'), client.info('commandstats')])
          const bytes = Number(/aof_current_size:(\d+)/.exec(aof)?.[1])
          let commands = 0
          for (const m of stats.matchAll(/calls=(\d+)/g)) commands += Number(m[1])
          return { bytes, commands }
        }
        const cost = async (): Promise<{ bytes: number; commands: number }> => {
          const a = await measure()
          for (let i = 0; i < 5; i++) await adapter.commit(batch(200))
          const b = await measure()
          // The two INFO calls of the second measure count too: the same every time.
          return { bytes: (b.bytes - a.bytes) / 1000, commands: b.commands - a.commands }
        }
        const empty = await cost()
        for (let i = 0; i < 60; i++) await adapter.commit(batch(500))
        assert.equal(await client.hlen('{culex}:d:offline'), 31_000)
        const deep = await cost()
        assert.ok(empty.bytes > 64, `the AOF holds each message: ${empty.bytes} bytes per message`)
        assert.equal(deep.bytes, empty.bytes, 'AOF bytes per message, 30,000 queued vs none')
        assert.equal(deep.commands, empty.commands, 'Redis commands per 1,000 messages, 30,000 queued vs none')
      } finally {
        await adapter.close()
        client.disconnect()
        await own.dispose()
      }
    })

    describe('open() checks that Redis fsyncs every write before it answers', () => {
      it('with appendfsync everysec it warns that acknowledged writes can be lost, and opens', async () => {
        const own = await startRedis({ args: ['--appendfsync', 'everysec'] })
        const warnings: string[] = []
        const adapter = new RedisPersistence({ redis: own.url, onWarning: (m) => warnings.push(m) })
        try {
          await adapter.open()
          assert.equal(warnings.length, 1)
          assert.match(warnings[0]!, /appendfsync is everysec \(needs always\)/)
          assert.match(warnings[0]!, /can be lost when Redis or its host crashes/)
          await adapter.commit([{ op: 'sessionCreate', clientId: 'a', expiryInterval: 1 }])
        } finally {
          await adapter.close()
          await own.dispose()
        }
      })

      it('with strict it refuses to open, naming every setting that is wrong, and leaves no connection behind', async () => {
        const own = await startRedis({ args: ['--appendonly', 'no', '--no-appendfsync-on-rewrite', 'yes'] })
        const client = new Redis(own.port, '127.0.0.1')
        const adapter = new RedisPersistence({ redis: own.url, strict: true, onWarning: (m) => assert.fail(`strict warned instead: ${m}`) })
        try {
          await assert.rejects(adapter.open(), (error: Error) => {
            assert.match(error.message, /^RedisPersistence \(strict\) refuses to open/)
            assert.match(error.message, /appendonly is no \(needs yes\)/)
            assert.match(error.message, /no-appendfsync-on-rewrite is yes \(needs no\)/)
            assert.doesNotMatch(error.message, /appendfsync is/)
            return true
          })
          await assert.rejects(Promise.resolve(adapter.commit([{ op: 'sessionCreate', clientId: 'a', expiryInterval: 1 }])), /not open/)
          const connections = async (): Promise<number> => ((await client.call('CLIENT', 'LIST')) as string).trim().split('\n').length
          const deadline = Date.now() + 5000
          while ((await connections()) > 1 && Date.now() < deadline) await client.ping()
          assert.equal(await connections(), 1, 'only our own inspecting connection is left')
        } finally {
          client.disconnect()
          await own.dispose()
        }
      })

      it('without onWarning the warning goes to process.emitWarning with its code', async () => {
        const own = await startRedis({ args: ['--appendfsync', 'no'] })
        const seen: Error[] = []
        const listener = (warning: Error): void => void seen.push(warning)
        process.on('warning', listener)
        const adapter = new RedisPersistence({ redis: own.url })
        try {
          await adapter.open()
          await until(() => seen.some((w) => (w as Error & { code?: string }).code === 'CULEX_REDIS_NOT_DURABLE'), 5000, 'the process warning')
          const warning = seen.find((w) => (w as Error & { code?: string }).code === 'CULEX_REDIS_NOT_DURABLE')!
          assert.match(warning.message, /appendfsync is no \(needs always\)/)
        } finally {
          process.off('warning', listener)
          await adapter.close()
          await own.dispose()
        }
      })

      it('with CONFIG disabled (renamed away) it warns that it could not check, and opens, even when strict', async () => {
        const own = await startRedis({ args: ['--rename-command', 'CONFIG', ''] })
        const warnings: string[] = []
        const adapter = new RedisPersistence({ redis: own.url, strict: true, onWarning: (m) => warnings.push(m) })
        try {
          await adapter.open()
          assert.equal(warnings.length, 1)
          assert.match(warnings[0]!, /could not check that Redis fsyncs every write/)
          assert.match(warnings[0]!, /unknown command/)
          await adapter.commit([{ op: 'sessionCreate', clientId: 'a', expiryInterval: 1 }])
        } finally {
          await adapter.close()
          await own.dispose()
        }
      })
    })

    describe('when Redis fails', () => {
      it('stopped: a commit rejects at once (not at its timeout); restarted on the same port and directory: commits succeed again and the earlier data is there', async () => {
        const own = await startRedis()
        const adapter = new RedisPersistence({ redis: own.url, commitTimeoutMs: 60_000 })
        try {
          await adapter.open()
          await adapter.commit(crashBatch(1))
          await own.stop()
          for (const attempt of ['at once', 'again']) {
            const started = performance.now()
            await assert.rejects(adapter.commit(crashBatch(2)), /Redis|connection/, attempt)
            assert.ok(performance.now() - started < 1000, `rejected ${attempt} in ${Math.round(performance.now() - started)} ms`)
          }
          await own.restart()
          // ioredis reconnects by itself, after a back-off; the broker retries its batch meanwhile.
          await eventually(() => adapter.commit(crashBatch(2)), 'a commit after the restart')
          await adapter.commit(crashBatch(3))
          await adapter.close()
          assertSameState(await reopenState(new RedisPersistence({ redis: own.url })), crashExpected(3))
        } finally {
          await adapter.close()
          await own.dispose()
        }
      })

      it('a commit Redis holds when the connection drops rejects as the connection goes, not at its timeout', async () => {
        const own = await startRedis()
        const client = new Redis(own.port, '127.0.0.1')
        client.on('error', () => {})
        const adapter = new RedisPersistence({ redis: own.url, commitTimeoutMs: 60_000 })
        try {
          await adapter.open()
          await client.call('CLIENT', 'PAUSE', '30000', 'WRITE')
          const outcome = adapter.commit(crashBatch(1)).then(
            () => 'resolved',
            (error: Error) => error.message,
          )
          await waitForBlockedCommit(client)
          const killed = performance.now()
          await own.kill()
          const message = await outcome
          assert.match(message, /connection to Redis was lost before it answered; the batch may or may not have been applied/)
          assert.ok(performance.now() - killed < 2000, `rejected ${Math.round(performance.now() - killed)} ms after the kill`)
        } finally {
          client.disconnect()
          await adapter.close()
          await own.dispose()
        }
      })

      it('a commit Redis does not answer rejects after commitTimeoutMs; applied late, it does no harm to the retry and the batches after it', async () => {
        const prefix = freshPrefix()
        const adapter = adapterOn(prefix, { commitTimeoutMs: 150 })
        await adapter.open()
        try {
          await adapter.commit(crashBatch(1))
          await admin.call('CLIENT', 'PAUSE', '30000', 'WRITE')
          const started = performance.now()
          try {
            await assert.rejects(adapter.commit(crashBatch(2)), /did not answer a commit within 150 ms; the batch may or may not have been applied/)
          } finally {
            await admin.call('CLIENT', 'UNPAUSE')
          }
          const elapsed = performance.now() - started
          assert.ok(elapsed >= 140 && elapsed < 2000, `rejected after ${Math.round(elapsed)} ms`)
          // The broker commits the batch again, then goes on.
          await adapter.commit(crashBatch(2))
          await adapter.commit(crashBatch(3))
          await adapter.close()
          assertSameState(await reopenState(adapterOn(prefix)), crashExpected(3))
        } finally {
          await adapter.close()
          await dropPrefix(prefix)
        }
      })

      it('Redis killed with SIGKILL under appendfsync always: every commit that resolved is there after its restart, and no batch in part', async () => {
        const own = await startRedis()
        const adapter = new RedisPersistence({ redis: own.url })
        try {
          await adapter.open()
          let resolved = 0
          let kill: Promise<void> | undefined
          const target = 20 + Math.floor(Math.random() * 30)
          for (let n = 1; ; n++) {
            try {
              await adapter.commit(crashBatch(n))
            } catch {
              break
            }
            resolved = n
            // Killed while the next commits are on their way: the next iterations race it.
            if (n === target) kill = own.kill()
            assert.ok(n < target + 10_000, 'commits go on failing once Redis is gone')
          }
          await kill
          await own.restart()
          const state = await reopenState(new RedisPersistence({ redis: own.url }))
          const last = crashLastBatch(state)
          assert.ok(last >= resolved, `${resolved} commits resolved; Redis holds batches 1..${last}`)
          assertSameState(state, crashExpected(last), `batches 1..${last} whole, nothing of a later one`)
        } finally {
          await adapter.close()
          await own.dispose()
        }
      })
    })

    it('without ioredis installed, importing the module works and open() says what to run', async () => {
      // A loader hook makes 'ioredis' unresolvable, as in a project that never installed it.
      const hook = `export async function resolve(specifier, context, next) {
        if (specifier === 'ioredis') throw Object.assign(new Error("Cannot find package 'ioredis'"), { code: 'ERR_MODULE_NOT_FOUND' })
        return next(specifier, context)
      }`
      const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hook)}`)})`
      const module = new URL('../../src/persistence/redis.ts', import.meta.url).href
      const program = `
        const { RedisPersistence } = await import(${JSON.stringify(module)})
        console.log('imported')
        try { await new RedisPersistence({ redis: 'redis://127.0.0.1:1' }).open(); console.log('opened') }
        catch (error) { console.log('open failed: ' + error.message) }`
      const output = await run(process.execPath, ['--import', 'tsx', '--import', `data:text/javascript,${encodeURIComponent(register)}`, '--input-type=module', '--eval', program])
      assert.equal(output, 'imported\nopen failed: RedisPersistence needs the ioredis package, which is not installed: run `npm install ioredis`\n')
    })

    describe('naming the server', () => {
      it('an ioredis client: the adapter opens a connection of its own with its options, and leaves the client open', async () => {
        const prefix = freshPrefix()
        const given = new Redis({ port: server.port, host: '127.0.0.1', lazyConnect: true })
        await given.connect()
        const adapter = new RedisPersistence({ redis: given, prefix })
        try {
          const before = await connectionCount(admin)
          await adapter.open()
          assert.equal(await connectionCount(admin), before + 1, 'a connection of its own')
          await adapter.commit(crashBatch(1))
          await adapter.close()
          assert.equal(await given.ping(), 'PONG', 'the given client is still open')
          assert.equal(given.options.enableOfflineQueue, true, "the given client's options are untouched")
          assertSameState(await reopenState(new RedisPersistence({ redis: given, prefix })), crashExpected(1))
        } finally {
          given.disconnect()
          await dropPrefix(prefix)
        }
      })

      it('ioredis options', async () => {
        const prefix = freshPrefix()
        const adapter = new RedisPersistence({ redis: { host: '127.0.0.1', port: server.port }, prefix })
        try {
          await adapter.open()
          await adapter.commit(crashBatch(1))
          await adapter.close()
          assertSameState(await reopenState(new RedisPersistence({ redis: server.url, prefix })), crashExpected(1))
        } finally {
          await adapter.close()
          await dropPrefix(prefix)
        }
      })

      it('an unreachable server: open() rejects, and can be tried again', async () => {
        const own = await startRedis()
        const url = own.url
        await own.stop()
        const adapter = new RedisPersistence({ redis: url })
        try {
          await assert.rejects(adapter.open(), /ECONNREFUSED|Connection is closed/)
          await own.restart()
          assert.deepEqual(await adapter.open(), { sessions: [], retained: [], lastMessageId: 0 })
        } finally {
          await adapter.close()
          await own.dispose()
        }
      })
    })

    describe('lifecycle and options', () => {
      it('a prefix with braces, an empty one or a non-positive commitTimeoutMs is refused at construction', () => {
        assert.throws(() => new RedisPersistence({ prefix: 'a{b}' }), /without '\{' or '\}'/)
        assert.throws(() => new RedisPersistence({ prefix: '' }), /non-empty/)
        assert.throws(() => new RedisPersistence({ commitTimeoutMs: 0 }), /commitTimeoutMs must be positive/)
      })

      it('commit before open, and open twice, are refused', async () => {
        const adapter = adapterOn(freshPrefix())
        await assert.rejects(Promise.resolve(adapter.commit([{ op: 'sessionCreate', clientId: 'a', expiryInterval: 1 }])), /not open/)
        await adapter.open()
        try {
          await assert.rejects(adapter.open(), /already open/)
        } finally {
          await adapter.close()
        }
      })
    })
  })
}

// --- Helpers --------------------------------------------------------------------------------

/** Opens an adapter (a new instance on an existing store), reads what it restores, closes it. */
async function reopenState(adapter: RedisPersistence): Promise<RestoredState> {
  try {
    return await adapter.open()
  } finally {
    await adapter.close()
  }
}

async function keysOf(client: Redis, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', `{${prefix}}:*`, 'COUNT', 1000)
    cursor = next
    keys.push(...found)
  } while (cursor !== '0')
  return keys
}

async function connectionCount(client: Redis): Promise<number> {
  return ((await client.call('CLIENT', 'LIST')) as string).trim().split('\n').length
}

/**
 * Checks the store's keys against what they must say together: per-session keys only for
 * sessions that exist; every message referred to by a delivery stored; its reference count
 * implied (1), in `mref` (1 + n) or, with no delivery, the message listed in `orphans`.
 */
async function assertConsistentKeys(client: Redis, prefix: string): Promise<void> {
  const p = `{${prefix}}:`
  const fixed = new Set(['sessions', 'msg', 'mref', 'retained', 'wills', 'msgid', 'orphans'])
  const sessions = new Set(await client.hkeys(`${p}sessions`))
  const refs = new Map<string, number>()
  for (const key of await keysOf(client, prefix)) {
    const name = key.slice(p.length)
    if (fixed.has(name)) continue
    const match = /^(d|subs|q2):(.*)$/s.exec(name)
    assert.ok(match !== null, `${key} is a key of the layout`)
    assert.ok(sessions.has(match[2]!), `${key} belongs to a session that exists`)
    if (match[1] === 'd') {
      for (const value of await client.hvals(key)) {
        const id = /^[qsr]\d*\|(\d+)\|/.exec(value)?.[1]
        assert.ok(id !== undefined, `${key} holds a delivery value: ${value}`)
        refs.set(id, (refs.get(id) ?? 0) + 1)
      }
    }
  }
  for (const clientId of await client.hkeys(`${p}wills`)) assert.ok(sessions.has(clientId), `the will of ${clientId} belongs to a session that exists`)
  const stored = new Set(await client.hkeys(`${p}msg`))
  const extra = await client.hgetall(`${p}mref`)
  const orphans = new Set(await client.smembers(`${p}orphans`))
  for (const id of refs.keys()) assert.ok(stored.has(id), `message ${id}, referred to by a delivery, is stored`)
  for (const id of stored) {
    const n = refs.get(id) ?? 0
    assert.equal(orphans.has(id), n === 0, `message ${id} (${n} deliveries) is listed in orphans exactly when no delivery refers to it`)
    assert.equal(extra[id], n > 1 ? String(n - 1) : undefined, `message ${id} (${n} deliveries): mref holds the references beyond one`)
  }
  for (const id of [...Object.keys(extra), ...orphans]) assert.ok(stored.has(id), `message ${id} counted in mref/orphans is stored`)
}

/**
 * Retries `attempt` until it resolves (Redis coming back), re-trying every 20 ms (each try is a
 * real commit, which fails at once while ioredis reconnects); fails after 10 s.
 */
async function eventually(attempt: () => Promise<unknown>, what: string): Promise<void> {
  const deadline = performance.now() + 10_000
  let failures = 0
  for (;;) {
    try {
      await attempt()
      return
    } catch (error) {
      failures++
      if (performance.now() > deadline) throw new Error(`${what} still failed after ${failures} tries: ${(error as Error).message}`, { cause: error })
      await new Promise<void>((resolve) => realTimer(20, resolve))
    }
  }
}

/** Waits until Redis holds a client blocked in EVALSHA (a commit held by CLIENT PAUSE). */
async function waitForBlockedCommit(client: Redis): Promise<void> {
  const deadline = performance.now() + 5000
  while (!((await client.call('CLIENT', 'LIST')) as string).split('\n').some((line) => /flags=\S*b/.test(line) && /cmd=evalsha/.test(line))) {
    if (performance.now() > deadline) throw new Error('no commit reached Redis')
  }
}

/** Runs a program; resolves with its stdout, rejects with its stderr if it fails. */
function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: fileURLToPath(new URL('../..', import.meta.url)), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk))
    child.on('error', reject)
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${err}`))))
  })
}

function message(topic: string, n: number, fields: Partial<StoredMessage> = {}): StoredMessage {
  return { topic, payload: Buffer.from([n & 0xff, 0, 0xff, (n * 7) & 0xff]), qos: 1, retain: false, receivedAt: T0 + n, ...fields }
}

function will(clientId: string): WillMessage {
  return { topic: `wills/${clientId}`, payload: Buffer.from(`bye ${clientId}`), qos: 1, retain: false, properties: { willDelayInterval: 5, correlationData: Buffer.from([1, 2]) } }
}

/** A session's worth of operations for `clientId` (which must exist), with messages numbered from `part * 10`. */
function fullOps(clientId: string, part: number): PersistenceOp[] {
  const base = part * 10
  return [
    { op: 'subscribe', clientId, subscription: { topicFilter: `full/${part}/#`, qos: 2, noLocal: true } },
    { op: 'message', messageId: base + 1, message: message(`full/${part}/1`, base + 1) },
    { op: 'message', messageId: base + 2, message: message(`full/${part}/2`, base + 2, { qos: 2 }) },
    { op: 'enqueue', clientId, seq: base + 1, messageId: base + 1, qos: 1, retain: false },
    { op: 'enqueue', clientId, seq: base + 2, messageId: base + 2, qos: 2, retain: true, subscriptionIds: [part], shareGroup: `$share/g/full/${part}` },
    { op: 'sent', clientId, seq: base + 2, packetId: base + 2 },
    { op: 'received', clientId, seq: base + 2 },
    { op: 'qos2Received', clientId, packetId: base + 3 },
    { op: 'will', clientId, will: will(clientId), publishAt: T0 + base },
    { op: 'sessionUpdate', clientId, expiryInterval: part, disconnectedAt: T0 + part },
  ]
}

// --- Random operations, on few clients, seqs and ids, so that they collide -------------------

const clientIdArb = fc.constantFrom('a', 'b', 'c')
const seqArb = fc.integer({ min: 1, max: 6 })
const messageIdArb = fc.integer({ min: 1, max: 9 })
const packetIdArb = fc.integer({ min: 1, max: 4 })

/** The message of an id: the same content every time an id is stored again, as the broker's would be. */
function randomMessage(id: number): StoredMessage {
  const m: StoredMessage = { topic: `m/${id}`, payload: Buffer.from([id, 0, 0xff - id]), qos: (id % 3) as QoS, retain: id % 2 === 0, receivedAt: T0 + id }
  if (id % 3 === 1) m.properties = { correlationData: Buffer.from([id, 0x80]), userProperties: [['z', String(id)], ['a', ''], ['z', 'again']], contentType: 'x/y' }
  return m
}

const subscriptionArb: fc.Arbitrary<Subscription> = fc
  .record({ topicFilter: fc.constantFrom('x', 'y/#', '$share/g/z'), qos: fc.constantFrom<QoS>(0, 1, 2), noLocal: fc.option(fc.boolean(), { nil: undefined }), subscriptionIdentifier: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }) })
  .map((s) => {
    const out: Subscription = { topicFilter: s.topicFilter, qos: s.qos }
    if (s.noLocal !== undefined) out.noLocal = s.noLocal
    if (s.subscriptionIdentifier !== undefined) out.subscriptionIdentifier = s.subscriptionIdentifier
    return out
  })

const opArbitrary: fc.Arbitrary<PersistenceOp> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ clientId: clientIdArb, expiryInterval: fc.integer({ min: 0, max: 99 }) }).map((o): PersistenceOp => ({ op: 'sessionCreate', ...o })) },
  {
    weight: 1,
    arbitrary: fc.record({ clientId: clientIdArb, expiryInterval: fc.integer({ min: 0, max: 99 }), at: fc.option(fc.integer({ min: 0, max: 9 }), { nil: undefined }) }).map(
      ({ clientId, expiryInterval, at }): PersistenceOp => (at === undefined ? { op: 'sessionUpdate', clientId, expiryInterval } : { op: 'sessionUpdate', clientId, expiryInterval, disconnectedAt: T0 + at }),
    ),
  },
  { weight: 1, arbitrary: clientIdArb.map((clientId): PersistenceOp => ({ op: 'sessionDelete', clientId })) },
  { weight: 2, arbitrary: fc.record({ clientId: clientIdArb, subscription: subscriptionArb }).map((o): PersistenceOp => ({ op: 'subscribe', ...o })) },
  { weight: 1, arbitrary: fc.record({ clientId: clientIdArb, topicFilter: fc.constantFrom('x', 'y/#', '$share/g/z') }).map((o): PersistenceOp => ({ op: 'unsubscribe', ...o })) },
  { weight: 4, arbitrary: messageIdArb.map((messageId): PersistenceOp => ({ op: 'message', messageId, message: randomMessage(messageId) })) },
  {
    weight: 6,
    arbitrary: fc
      .record({
        clientId: clientIdArb,
        seq: seqArb,
        messageId: messageIdArb,
        qos: fc.constantFrom<1 | 2>(1, 2),
        retain: fc.boolean(),
        subscriptionIds: fc.option(fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 2 }), { nil: undefined }),
        shareGroup: fc.option(fc.constantFrom('$share/g/z', '$share/ü|x/#'), { nil: undefined }),
      })
      .map((o): PersistenceOp => {
        const op: PersistenceOp = { op: 'enqueue', clientId: o.clientId, seq: o.seq, messageId: o.messageId, qos: o.qos, retain: o.retain }
        if (o.subscriptionIds !== undefined) op.subscriptionIds = o.subscriptionIds
        if (o.shareGroup !== undefined) op.shareGroup = o.shareGroup
        return op
      }),
  },
  { weight: 3, arbitrary: fc.record({ clientId: clientIdArb, seq: seqArb, packetId: packetIdArb }).map((o): PersistenceOp => ({ op: 'sent', ...o })) },
  { weight: 2, arbitrary: fc.record({ clientId: clientIdArb, seq: seqArb }).map((o): PersistenceOp => ({ op: 'received', ...o })) },
  { weight: 4, arbitrary: fc.record({ clientId: clientIdArb, seq: seqArb }).map((o): PersistenceOp => ({ op: 'dequeue', ...o })) },
  { weight: 1, arbitrary: fc.record({ clientId: clientIdArb, packetId: packetIdArb }).map((o): PersistenceOp => ({ op: 'qos2Received', ...o })) },
  { weight: 1, arbitrary: fc.record({ clientId: clientIdArb, packetId: packetIdArb }).map((o): PersistenceOp => ({ op: 'qos2Released', ...o })) },
  {
    weight: 1,
    arbitrary: fc.record({ clientId: clientIdArb, kind: fc.constantFrom('none', 'open', 'due') }).map(({ clientId, kind }): PersistenceOp => {
      if (kind === 'none') return { op: 'will', clientId, will: null }
      return kind === 'open' ? { op: 'will', clientId, will: will(clientId) } : { op: 'will', clientId, will: will(clientId), publishAt: T0 + 1 }
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ topic: fc.constantFrom('r/1', 'r/2'), at: fc.integer({ min: 0, max: 2 }) }).map(({ topic, at }): PersistenceOp => ({ op: 'retain', message: { ...message(topic, at), retain: true } })),
  },
  {
    weight: 1,
    arbitrary: fc.record({ topic: fc.constantFrom('r/1', 'r/2'), at: fc.option(fc.integer({ min: 0, max: 2 }), { nil: undefined }) }).map(
      ({ topic, at }): PersistenceOp => (at === undefined ? { op: 'unretain', topic } : { op: 'unretain', topic, receivedAt: T0 + at }),
    ),
  },
)
