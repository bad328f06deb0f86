/**
 * The persistence adapter conformance suite: what every `PersistenceAdapter` must do, whatever
 * it stores into. An adapter's test file calls
 *
 * ```ts
 * persistenceConformance('MyAdapter', () => new MyAdapter(...))
 * ```
 *
 * Each test gets a fresh adapter from `create` and closes it. Every adapter method may answer
 * synchronously or with a Promise, so every result is awaited. Most tests await each call before
 * making the next; 'overlapping calls' makes them as the broker does, without waiting.
 *
 * Not covered (the suite never reopens a store): that what an adapter was told survives a new
 * instance on the same storage. An adapter that can reopen should test that itself.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { PersistenceAdapter, SessionRecord, StoredMessage } from '../../src/persistence/adapter.js'
import type { QoS } from '../../src/protocol/packets.js'

type Create = () => PersistenceAdapter | Promise<PersistenceAdapter>

function message(topic: string, payload: string | Buffer, qos: QoS = 0, extra: Partial<StoredMessage> = {}): StoredMessage {
  return {
    topic,
    payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
    qos,
    retain: true,
    receivedAt: 1_700_000_000_000,
    ...extra,
  }
}

/** Plain data with sorted keys, undefined fields dropped, Buffers kept: compares records whatever the adapter's object shapes. */
function plain(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return value
  if (Array.isArray(value)) return value.map(plain)
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key]
      if (v !== undefined) out[key] = plain(v)
    }
    return out
  }
  return value
}

/** Asserts that every payload-like field in a stored message is a real Buffer. */
function assertBuffers(m: StoredMessage, where: string): void {
  assert.ok(Buffer.isBuffer(m.payload), `${where}: payload is a Buffer`)
  if (m.properties?.correlationData !== undefined) {
    assert.ok(Buffer.isBuffer(m.properties.correlationData), `${where}: correlationData is a Buffer`)
  }
}

const byTopic = (a: StoredMessage, b: StoredMessage): number => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : 0)
const byClientId = (a: SessionRecord, b: SessionRecord): number => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0)

async function topicsMatching(adapter: PersistenceAdapter, filter: string): Promise<string[]> {
  const found = await adapter.matchRetained(filter)
  return found.map((m) => m.topic).sort()
}

/** A record using every field of SessionRecord, nested optional fields included. */
function fullRecord(clientId: string): SessionRecord {
  return {
    clientId,
    subscriptions: [
      { topicFilter: 'a/+/c', qos: 1 },
      { topicFilter: 'sensors/#', qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2 },
      { topicFilter: '$SYS/broker', qos: 0 },
    ],
    queue: [
      message('q/1', 'first queued', 1, { retain: false, receivedAt: 1_700_000_000_001 }),
      message('q/2', Buffer.from([0, 0xff, 0x80, 0x7f]), 2, {
        retain: true,
        receivedAt: 1_700_000_000_002,
        properties: {
          contentType: 'application/octet-stream',
          correlationData: Buffer.from([1, 2, 3]),
          messageExpiryInterval: 60,
          userProperties: [
            ['k', 'v'],
            ['k', 'v2'],
          ],
        },
      }),
      message('q/0', '', 0, { retain: false, receivedAt: 1_700_000_000_003 }),
    ],
    inflight: [
      { packetId: 1, qos: 1, state: 'publish', message: message('i/1', 'awaiting puback', 1, { retain: false }) },
      { packetId: 65535, qos: 2, state: 'publish', message: message('i/2', 'awaiting pubrec', 2, { retain: true }) },
      { packetId: 300, qos: 2, state: 'pubrel', message: message('i/3', 'awaiting pubcomp', 2, { retain: false }) },
    ],
    incomingQos2: [7, 1, 65535],
    will: {
      topic: 'wills/' + clientId,
      payload: Buffer.from([0xde, 0xad, 0xbe, 0xef]),
      qos: 1,
      retain: true,
      properties: { willDelayInterval: 5, contentType: 'text/plain' },
    },
  }
}

/** Registers the conformance tests for one adapter. */
export function persistenceConformance(name: string, create: Create): void {
  /** Runs `body` on a fresh adapter and closes it afterwards. */
  const withAdapter = async (body: (adapter: PersistenceAdapter) => Promise<void>): Promise<void> => {
    const adapter = await create()
    try {
      await body(adapter)
    } finally {
      await adapter.close()
    }
  }

  describe(`persistence conformance: ${name}`, () => {
    describe('retained messages', () => {
      it('start empty', () =>
        withAdapter(async (a) => {
          assert.deepEqual(await a.matchRetained('#'), [])
          assert.deepEqual(await a.matchRetained('a/b'), [])
        }))

      it('are found by their exact topic, and only by it', () =>
        withAdapter(async (a) => {
          // [MQTT-3.3.1-5] the server stores the retained message for its topic.
          const m = message('a/b', 'exact', 1)
          await a.storeRetained(m)
          const found = await a.matchRetained('a/b')
          assert.equal(found.length, 1)
          assert.deepEqual(plain(found[0]), plain(m))
          for (const other of ['a', 'a/b/c', 'a/B', 'a/b/', '/a/b', 'b']) {
            assert.deepEqual(await a.matchRetained(other), [], `filter ${other}`)
          }
        }))

      it("match '+' as exactly one level", () =>
        withAdapter(async (a) => {
          // [MQTT-4.7.1-3] the single-level wildcard matches one whole level, empty levels included.
          for (const t of ['a/b', 'a/c', 'a/b/c', 'a', 'b/b', 'a/', '/b']) await a.storeRetained(message(t, t))
          assert.deepEqual(await topicsMatching(a, 'a/+'), ['a/', 'a/b', 'a/c'])
          assert.deepEqual(await topicsMatching(a, '+/b'), ['/b', 'a/b', 'b/b'])
          assert.deepEqual(await topicsMatching(a, '+'), ['a'])
          assert.deepEqual(await topicsMatching(a, '+/+/+'), ['a/b/c'])
          assert.deepEqual(await topicsMatching(a, 'a/+/c'), ['a/b/c'])
        }))

      it("match '#' as any number of levels, the parent level included", () =>
        withAdapter(async (a) => {
          // [MQTT-4.7.1-2] the multi-level wildcard matches the parent and any number of child levels.
          for (const t of ['a', 'a/b', 'a/b/c', 'ab', 'b/a', '/a']) await a.storeRetained(message(t, t))
          assert.deepEqual(await topicsMatching(a, 'a/#'), ['a', 'a/b', 'a/b/c'])
          assert.deepEqual(await topicsMatching(a, '#'), ['/a', 'a', 'a/b', 'a/b/c', 'ab', 'b/a'])
          assert.deepEqual(await topicsMatching(a, 'a/b/#'), ['a/b', 'a/b/c'])
          assert.deepEqual(await topicsMatching(a, '+/#'), ['/a', 'a', 'a/b', 'a/b/c', 'ab', 'b/a'])
          assert.deepEqual(await topicsMatching(a, '/#'), ['/a'])
        }))

      it("keep '$' topics away from filters starting with a wildcard", () =>
        withAdapter(async (a) => {
          // [MQTT-4.7.2-1] filters starting with '#' or '+' do not match topics starting with '$'.
          for (const t of ['$SYS/uptime', '$SYS/a/b', '$share', 'plain/x']) await a.storeRetained(message(t, t))
          assert.deepEqual(await topicsMatching(a, '#'), ['plain/x'])
          assert.deepEqual(await topicsMatching(a, '+/uptime'), [])
          assert.deepEqual(await topicsMatching(a, '+'), [])
          assert.deepEqual(await topicsMatching(a, '+/#'), ['plain/x'])
          assert.deepEqual(await topicsMatching(a, '$SYS/#'), ['$SYS/a/b', '$SYS/uptime'])
          assert.deepEqual(await topicsMatching(a, '$SYS/+'), ['$SYS/uptime'])
          assert.deepEqual(await topicsMatching(a, '$SYS/uptime'), ['$SYS/uptime'])
          assert.deepEqual(await topicsMatching(a, '$share'), ['$share'])
        }))

      it("replace the topic's previous message", () =>
        withAdapter(async (a) => {
          // [MQTT-3.3.1-5] a new retained message replaces any existing one for the topic.
          await a.storeRetained(message('r/t', 'old', 2))
          await a.storeRetained(message('r/t', 'new', 1, { receivedAt: 1_800_000_000_000 }))
          const found = await a.matchRetained('r/t')
          assert.equal(found.length, 1)
          assert.equal(found[0]?.payload.toString(), 'new')
          assert.equal(found[0]?.qos, 1)
          assert.equal(found[0]?.receivedAt, 1_800_000_000_000)
          assert.equal((await a.matchRetained('#')).length, 1)
        }))

      it('are deleted by an empty payload, which is not stored itself', () =>
        withAdapter(async (a) => {
          // [MQTT-3.3.1-10] a retained message with a zero-byte payload removes the existing one and
          // [MQTT-3.3.1-11] is not stored.
          await a.storeRetained(message('d/t', 'doomed'))
          await a.storeRetained(message('d/keep', 'kept'))
          await a.storeRetained(message('d/t', Buffer.alloc(0)))
          assert.deepEqual(await a.matchRetained('d/t'), [])
          assert.deepEqual(await topicsMatching(a, 'd/#'), ['d/keep'])
          // Deleting a topic that has nothing retained is harmless.
          await a.storeRetained(message('d/never', Buffer.alloc(0)))
          assert.deepEqual(await topicsMatching(a, '#'), ['d/keep'])
          // The topic can be retained again afterwards.
          await a.storeRetained(message('d/t', 'back'))
          assert.deepEqual(await topicsMatching(a, 'd/#'), ['d/keep', 'd/t'])
        }))

      it('preserve binary payloads, QoS, timestamps and properties', () =>
        withAdapter(async (a) => {
          const every = Buffer.alloc(256)
          for (let i = 0; i < 256; i++) every[i] = i
          const stored = [
            message('bin/all-bytes', every, 2, { receivedAt: 1_700_000_000_123 }),
            message('bin/props', 'with properties', 1, {
              properties: {
                payloadFormatIndicator: 1,
                contentType: 'text/plain; charset=utf-8',
                responseTopic: 'reply/here',
                correlationData: Buffer.from([0, 1, 0xfe]),
                messageExpiryInterval: 3600,
                userProperties: [
                  ['a', '1'],
                  ['a', '2'],
                  ['ü', '✓'],
                ],
              },
            }),
            message('bin/utf8/ü/✓', 'ünïcödé ✓', 0),
          ]
          for (const m of stored) await a.storeRetained(m)
          const found = (await a.matchRetained('bin/#')).sort(byTopic)
          assert.equal(found.length, stored.length)
          for (const m of found) assertBuffers(m, m.topic)
          assert.deepEqual(plain(found), plain([...stored].sort(byTopic)))
          assert.ok(found.every((m) => m.retain === true))
        }))
    })

    describe('sessions', () => {
      it('start empty', () =>
        withAdapter(async (a) => {
          assert.deepEqual(await a.loadSessions(), [])
        }))

      it('round-trip every SessionRecord field', () =>
        withAdapter(async (a) => {
          // [MQTT-3.1.2-4] a session's state (subscriptions, QoS 1/2 messages sent and unacknowledged,
          // pending, and QoS 2 received and not completed) must outlive the network connection.
          const record = fullRecord('full')
          await a.saveSession(record)
          const loaded = await a.loadSessions()
          assert.equal(loaded.length, 1)
          const back = loaded[0] as SessionRecord
          assert.deepEqual(plain(back), plain(fullRecord('full')))
          // Order matters where the broker relies on it.
          assert.deepEqual(
            back.queue.map((m) => m.topic),
            ['q/1', 'q/2', 'q/0'],
            'queue oldest first',
          )
          for (const m of back.queue) assertBuffers(m, `queue ${m.topic}`)
          for (const e of back.inflight) assertBuffers(e.message, `inflight ${e.packetId}`)
          assert.ok(back.will && Buffer.isBuffer(back.will.payload), 'will payload is a Buffer')
        }))

      it('round-trip a minimal record (no will, nothing queued)', () =>
        withAdapter(async (a) => {
          await a.saveSession({ clientId: 'bare', subscriptions: [], queue: [], inflight: [], incomingQos2: [] })
          const loaded = await a.loadSessions()
          assert.equal(loaded.length, 1)
          const back = loaded[0] as SessionRecord
          assert.equal(back.clientId, 'bare')
          assert.deepEqual(back.subscriptions, [])
          assert.deepEqual(back.queue, [])
          assert.deepEqual(back.inflight, [])
          assert.deepEqual(back.incomingQos2, [])
          assert.equal(back.will, undefined)
        }))

      it('keep several sessions apart, client ids of any characters included', () =>
        withAdapter(async (a) => {
          const ids = ['one', 'two', 'ünï/cödé #+ ✓', 'x'.repeat(200)]
          for (const id of ids) await a.saveSession(fullRecord(id))
          const loaded = (await a.loadSessions()).sort(byClientId)
          assert.deepEqual(
            loaded.map((r) => r.clientId),
            [...ids].sort(),
          )
          for (const r of loaded) assert.deepEqual(plain(r), plain(fullRecord(r.clientId)))
        }))

      it('replace a saved session by its client id', () =>
        withAdapter(async (a) => {
          await a.saveSession(fullRecord('again'))
          const replacement: SessionRecord = {
            clientId: 'again',
            subscriptions: [{ topicFilter: 'only/this', qos: 1 }],
            queue: [message('only/this', 'one left', 1, { retain: false })],
            inflight: [],
            incomingQos2: [42],
          }
          await a.saveSession(replacement)
          const loaded = await a.loadSessions()
          assert.equal(loaded.length, 1)
          const back = loaded[0] as SessionRecord
          assert.deepEqual(plain(back), plain(replacement))
          assert.equal(back.will, undefined, 'the replaced will is gone')
        }))

      it('delete a session, and ignore unknown ids', () =>
        withAdapter(async (a) => {
          await a.saveSession(fullRecord('stays'))
          await a.saveSession(fullRecord('goes'))
          await a.deleteSession('goes')
          assert.deepEqual(
            (await a.loadSessions()).map((r) => r.clientId),
            ['stays'],
          )
          await a.deleteSession('never-saved')
          await a.deleteSession('goes')
          assert.deepEqual(
            (await a.loadSessions()).map((r) => r.clientId),
            ['stays'],
          )
          // A deleted id can be saved again.
          await a.saveSession(fullRecord('goes'))
          assert.deepEqual(
            (await a.loadSessions()).map((r) => r.clientId).sort(),
            ['goes', 'stays'],
          )
        }))

      it('keep sessions and retained messages independent', () =>
        withAdapter(async (a) => {
          await a.saveSession(fullRecord('s'))
          await a.storeRetained(message('s', 'retained on a topic named like the client'))
          await a.deleteSession('s')
          assert.deepEqual(await topicsMatching(a, '#'), ['s'])
          await a.saveSession(fullRecord('s'))
          await a.storeRetained(message('s', Buffer.alloc(0)))
          assert.deepEqual(
            (await a.loadSessions()).map((r) => r.clientId),
            ['s'],
          )
        }))
    })

    describe('overlapping calls', () => {
      it('on different topics and client ids all take effect, made without waiting as the broker makes them', () =>
        withAdapter(async (a) => {
          // The broker does not wait for one call before making the next (it tracks them all), so
          // calls for different keys may be in flight together; each must still take effect.
          const topics = Array.from({ length: 8 }, (_, i) => `o/${i}`)
          const ids = Array.from({ length: 8 }, (_, i) => `overlap-${i}`)
          await Promise.all([...topics.map((t) => a.storeRetained(message(t, t))), ...ids.map((id) => a.saveSession(fullRecord(id)))])
          assert.deepEqual(await topicsMatching(a, 'o/#'), topics)
          const loaded = (await a.loadSessions()).sort(byClientId)
          assert.deepEqual(
            loaded.map((r) => r.clientId),
            [...ids].sort(),
          )
          for (const r of loaded) assert.deepEqual(plain(r), plain(fullRecord(r.clientId)))
        }))
    })

    describe('close', () => {
      it('resolves after writes, and may be awaited once the adapter is idle', async () => {
        const a = await create()
        await a.storeRetained(message('c/t', 'before close'))
        await a.saveSession(fullRecord('c'))
        // The writes were done when they resolved: close follows real work, not an empty adapter.
        assert.deepEqual(await topicsMatching(a, '#'), ['c/t'])
        assert.deepEqual(
          (await a.loadSessions()).map((r) => r.clientId),
          ['c'],
        )
        // Awaiting close neither throws, rejects nor hangs (the test's timeout), and yields nothing.
        assert.equal(await a.close(), undefined)
      })
    })
  })
}
