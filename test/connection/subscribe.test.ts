/**
 * SUBSCRIBE and UNSUBSCRIBE over real sockets: filter validation, SUBACK codes, empty packets,
 * UNSUBACK, authorizeSubscribe, the $-topic rule and overlapping subscriptions.
 * Normative references are to MQTT 3.1.1 (OASIS, 29 October 2014).
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { IClientOptions } from 'mqtt'
import type { AuthorizeSubscribeHook } from '../../src/hooks/types.js'
import type { QoS, Subscription } from '../../src/protocol/packets.js'
import { fixedHeader, Inbox, RawMqtt, startBroker, subackCodes, u16, type TestBroker } from '../helpers/index.js'

/** A broker that never answers must fail the test, not hang the run. */
const TEST_TIMEOUT = 10_000

const VERSIONS: Array<{ name: string; version: 3 | 4; opts: IClientOptions }> = [
  { name: 'MQTT 3.1.1', version: 4, opts: { protocolVersion: 4 } },
  { name: 'MQTT 3.1', version: 3, opts: { protocolVersion: 3, protocolId: 'MQIsdp' } },
]

function subscribe(raw: RawMqtt, packetId: number, subscriptions: Array<[string, QoS]>): void {
  raw.send({ type: 'subscribe', packetId, subscriptions: subscriptions.map(([topicFilter, qos]) => ({ topicFilter, qos })) })
}

/** After a connection was closed for a violation, the broker still routes for new clients. */
async function assertStillServing(b: TestBroker): Promise<void> {
  const sub = await RawMqtt.open(b, 'still-sub')
  subscribe(sub, 1, [['still/alive', 1]])
  assert.deepEqual((await sub.take('suback')).reasonCodes, [1])
  const pub = await b.connect({ clientId: 'still-pub' })
  await pub.publishAsync('still/alive', 'yes', { qos: 1 })
  const got = await sub.takePublish('yes')
  assert.equal(got.topic, 'still/alive')
}

describe('SUBSCRIBE', () => {
  test('invalid filters get 0x80 while valid filters in the same packet are granted, one code per filter in order', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-4.7.1-2] '#' alone in the last level; [MQTT-4.7.1-3] '+' alone in its level;
    // [MQTT-4.7.3-1] filters at least one character; [MQTT-3.8.4-4] a multi-filter SUBSCRIBE is
    // handled as a sequence of SUBSCRIBEs; [MQTT-3.8.4-5] [MQTT-3.9.3-1] one code per filter, in order
    const b = await startBroker()
    try {
      const sub = await RawMqtt.open(b, 'raw-sub')
      subscribe(sub, 99, [
        ['a/#/b', 1],
        ['ok/1', 1],
        ['a#', 0],
        ['a/b+', 2],
        ['ok/+/x', 2],
        ['', 0],
        ['ok/#', 0],
        ['+a/b', 1],
      ])
      const suback = await sub.take('suback')
      // [MQTT-3.8.4-2] the SUBACK carries the SUBSCRIBE's packet identifier
      assert.equal(suback.packetId, 99)
      assert.deepEqual(suback.reasonCodes, [0x80, 1, 0x80, 0x80, 2, 0x80, 0, 0x80])
      // The valid filters are really in place: each delivers (at the highest matching grant).
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('ok/1', 'to-ok-1', { qos: 2 })
      await pub.publishAsync('ok/y/x', 'to-ok-y-x', { qos: 2 })
      assert.equal((await sub.takePublish('to-ok-1')).qos, 1)
      assert.equal((await sub.takePublish('to-ok-y-x')).qos, 2)
    } finally {
      await b.close()
    }
  })

  test('SUBACK codes are the granted QoS of each filter, in the order requested', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.8.4-5] [MQTT-3.9.3-1] return codes match the order of the topic filters
    const b = await startBroker()
    try {
      const sub = await RawMqtt.open(b, 'raw-sub')
      subscribe(sub, 5, [
        ['q/2', 2],
        ['q/0', 0],
        ['q/1', 1],
        ['q/+', 0],
      ])
      const suback = await sub.take('suback')
      assert.equal(suback.packetId, 5)
      assert.deepEqual(suback.reasonCodes, [2, 0, 1, 0])
    } finally {
      await b.close()
    }
  })

  test('a SUBSCRIBE with no topic filters closes the connection', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.8.3-3] the payload must contain at least one filter; without one it is a protocol
    // violation; [MQTT-4.8.0-1] the connection is closed
    const b = await startBroker()
    try {
      const raw = await RawMqtt.open(b, 'empty-sub')
      raw.write(fixedHeader(0x82, u16(1)))
      await raw.waitClosed()
      assert.equal(raw.pending().filter((p) => p.type === 'suback').length, 0)
      await assertStillServing(b)
    } finally {
      await b.close()
    }
  })

  test('re-subscribing to the same filter replaces the subscription (new QoS, single delivery)', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.8.4-3] an identical filter replaces the existing subscription
    const b = await startBroker()
    try {
      const client = await b.connect({ clientId: 'sub' })
      const inbox = new Inbox(client)
      await client.subscribeAsync('r/t', { qos: 0 })
      await client.subscribeAsync('r/t', { qos: 2 })
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('r/t', 'm', { qos: 2 })
      await pub.publishAsync('r/t', 'end', { qos: 2 })
      await inbox.waitFor('end')
      assert.equal(inbox.withPayload('m').length, 1)
      assert.equal(inbox.withPayload('m')[0]?.qos, 2)
    } finally {
      await b.close()
    }
  })
})

describe('UNSUBSCRIBE', () => {
  test('an UNSUBSCRIBE with no topic filters closes the connection', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.10.3-2] the payload must contain at least one filter; [MQTT-4.8.0-1] close
    const b = await startBroker()
    try {
      const raw = await RawMqtt.open(b, 'empty-unsub')
      raw.write(fixedHeader(0xa2, u16(1)))
      await raw.waitClosed()
      assert.equal(raw.pending().filter((p) => p.type === 'unsuback').length, 0)
      await assertStillServing(b)
    } finally {
      await b.close()
    }
  })

  test('UNSUBACK is sent, with the packet identifier, even when the filter was not subscribed', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.10.4-4] [MQTT-3.10.4-5] UNSUBACK with the same identifier even if nothing was deleted
    const b = await startBroker()
    try {
      const raw = await RawMqtt.open(b, 'raw')
      raw.send({ type: 'unsubscribe', packetId: 42, topicFilters: ['never/subscribed', 'nor/+/this'] })
      const unsuback = await raw.take('unsuback')
      assert.equal(unsuback.packetId, 42)
    } finally {
      await b.close()
    }
  })

  test('after UNSUBSCRIBE no more messages are delivered for that filter', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.10.4-1] a matching filter is deleted; [MQTT-3.10.4-2] no new messages are added for it
    const b = await startBroker()
    try {
      const client = await b.connect({ clientId: 'sub' })
      const inbox = new Inbox(client)
      await client.subscribeAsync({ 'u/t': { qos: 1 }, 'u/sentinel': { qos: 1 } })
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('u/t', 'before', { qos: 1 })
      await inbox.waitFor('before')
      await client.unsubscribeAsync('u/t')
      await pub.publishAsync('u/t', 'after', { qos: 1 })
      await pub.publishAsync('u/sentinel', 'sentinel', { qos: 1 })
      await inbox.waitFor('sentinel')
      assert.deepEqual(inbox.messages.map((m) => m.payload), ['before', 'sentinel'])
    } finally {
      await b.close()
    }
  })

  test('UNSUBSCRIBE of a wildcard filter removes exactly that filter (character by character)', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.10.4-1] filters are compared character by character; other subscriptions remain
    const b = await startBroker()
    try {
      const client = await b.connect({ clientId: 'sub' })
      const inbox = new Inbox(client)
      await client.subscribeAsync({ 'w/+': { qos: 0 }, 'w/#': { qos: 0 } })
      await client.unsubscribeAsync('w/+')
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('w/a', 'via-hash', { qos: 1 })
      const got = await inbox.waitFor('via-hash')
      assert.equal(got.topic, 'w/a')
      await client.unsubscribeAsync('w/#')
      await client.subscribeAsync('w/end', { qos: 0 })
      await pub.publishAsync('w/a', 'gone', { qos: 1 })
      await pub.publishAsync('w/end', 'end', { qos: 1 })
      await inbox.waitFor('end')
      assert.deepEqual(inbox.messages.map((m) => m.payload), ['via-hash', 'end'])
    } finally {
      await b.close()
    }
  })
})

describe('authorizeSubscribe', () => {
  for (const { name, opts } of VERSIONS) {
    for (const mode of ['sync', 'async'] as const) {
      test(`${name}, ${mode}: refusing test/nosubscribe gives SUBACK 0x80 for it, other filters granted, nothing delivered on it`, { timeout: TEST_TIMEOUT }, async () => {
        // SUBACK return code 0x80 is Failure (section 3.9.3); [MQTT-3.8.4-4] the other filters are
        // still handled; a refused subscription delivers nothing
        const decide = (s: Subscription): boolean => s.topicFilter !== 'test/nosubscribe'
        const hook: AuthorizeSubscribeHook = mode === 'sync' ? (_c, s) => decide(s) : async (_c, s) => decide(s)
        const b = await startBroker({ authorizeSubscribe: hook })
        try {
          const client = await b.connect({ clientId: 'sub', ...opts })
          const inbox = new Inbox(client)
          const codes = await subackCodes(client, { 'test/ok': { qos: 1 }, 'test/nosubscribe': { qos: 1 }, 'test/also': { qos: 2 } })
          assert.deepEqual(codes, [1, 0x80, 2])
          const pub = await b.connect({ clientId: 'pub', ...opts })
          await pub.publishAsync('test/nosubscribe', 'refused', { qos: 1 })
          await pub.publishAsync('test/ok', 'sentinel', { qos: 1 })
          await inbox.waitFor('sentinel')
          assert.deepEqual(inbox.messages.map((m) => m.payload), ['sentinel'])
        } finally {
          await b.close()
        }
      })
    }
  }

  for (const mode of ['sync', 'async'] as const) {
    test(`${mode}: returning 1 for a QoS 2 request grants 1, and messages come at most at QoS 1`, { timeout: TEST_TIMEOUT }, async () => {
      // [MQTT-3.8.4-6] the server may grant a lower QoS; delivery is at min(published, granted)
      const calls: Array<[string, string, QoS]> = []
      const hook: AuthorizeSubscribeHook = (client, s) => {
        calls.push([client.id, s.topicFilter, s.qos])
        const decision = s.topicFilter === 'cap/1' ? 1 : true
        return mode === 'sync' ? decision : Promise.resolve(decision)
      }
      const b = await startBroker({ authorizeSubscribe: hook })
      try {
        const client = await b.connect({ clientId: 'sub' })
        const inbox = new Inbox(client)
        assert.deepEqual(await subackCodes(client, { 'cap/1': { qos: 2 }, 'cap/2': { qos: 2 } }), [1, 2])
        assert.deepEqual(calls, [
          ['sub', 'cap/1', 2],
          ['sub', 'cap/2', 2],
        ])
        const pub = await b.connect({ clientId: 'pub' })
        await pub.publishAsync('cap/1', 'capped', { qos: 2 })
        await pub.publishAsync('cap/2', 'full', { qos: 2 })
        assert.equal((await inbox.waitFor('capped')).qos, 1)
        assert.equal((await inbox.waitFor('full')).qos, 2)
      } finally {
        await b.close()
      }
    })
  }

  test('a granted QoS higher than requested is not granted: the request caps it', { timeout: TEST_TIMEOUT }, async () => {
    // Section 3.8.4: the server might grant a lower maximum QoS than requested, never a higher one
    const b = await startBroker({ authorizeSubscribe: () => 2 })
    try {
      const client = await b.connect({ clientId: 'sub' })
      assert.deepEqual(await subackCodes(client, { 'low/0': { qos: 0 }, 'low/1': { qos: 1 } }), [0, 1])
    } finally {
      await b.close()
    }
  })

  test('a JavaScript host returning a failure code (0x80) or anything but true/0/1/2 refuses the subscription', { timeout: TEST_TIMEOUT }, async () => {
    // The hook's type says boolean | QoS; an untyped host may return the SUBACK code it means.
    const answers: Record<string, unknown> = { 'no/code': 0x80, 'no/null': null, 'no/string': 'yes', 'yes/true': true }
    const b = await startBroker({ authorizeSubscribe: ((_c, s) => answers[s.topicFilter]) as AuthorizeSubscribeHook })
    try {
      const client = await b.connect({ clientId: 'sub' })
      const codes = await subackCodes(client, { 'no/code': { qos: 1 }, 'no/null': { qos: 1 }, 'no/string': { qos: 1 }, 'yes/true': { qos: 1 } })
      assert.deepEqual(codes, [0x80, 0x80, 0x80, 1])
    } finally {
      await b.close()
    }
  })

  test('an async hook that resolves slowly still answers in order and keeps later packets behind the SUBACK', { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.8.4-1] a SUBACK answers each SUBSCRIBE; [MQTT-3.8.4-2] with its packet identifier
    const b = await startBroker({
      authorizeSubscribe: (_c, s) =>
        new Promise((resolve) => setTimeout(() => resolve(s.topicFilter !== 'slow/no'), s.topicFilter === 'slow/no' ? 50 : 1)),
    })
    try {
      const raw = await RawMqtt.open(b, 'raw')
      subscribe(raw, 1, [['slow/no', 1]])
      subscribe(raw, 2, [['slow/yes', 1]])
      const first = await raw.take('suback')
      const second = await raw.take('suback')
      assert.deepEqual([first.packetId, first.reasonCodes], [1, [0x80]])
      assert.deepEqual([second.packetId, second.reasonCodes], [2, [1]])
    } finally {
      await b.close()
    }
  })
})

describe('$-topics', () => {
  test("'#' and '+/x' do not match '$SYS/x' or '$foo'; '$SYS/#' does", { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-4.7.2-1] filters starting with a wildcard do not match topic names starting with '$'
    const b = await startBroker()
    try {
      const wildClient = await b.connect({ clientId: 'wild' })
      const wild = new Inbox(wildClient)
      await wildClient.subscribeAsync({ '#': { qos: 1 }, '+/x': { qos: 1 }, '+': { qos: 1 } })
      const sysClient = await b.connect({ clientId: 'sys' })
      const sys = new Inbox(sysClient)
      await sysClient.subscribeAsync({ '$SYS/#': { qos: 1 }, '$foo': { qos: 1 } })
      const pub = await b.connect({ clientId: 'pub' })
      // Clients may not publish under $SYS/ (publish-refusals.test.ts); the host may.
      await pub.publishAsync('$foo', 'foo', { qos: 1 })
      await pub.publishAsync('plain/x', 'plain', { qos: 1 })
      await b.broker.publish({ topic: '$SYS/x', payload: 'sys-x-local', qos: 1 })
      await b.broker.publish({ topic: 'end/x', payload: 'end', qos: 1 })
      await wild.waitFor('end')
      assert.deepEqual(
        wild.messages.map((m) => m.payload),
        ['plain', 'end'],
      )
      await sys.waitFor('sys-x-local')
      assert.deepEqual(sys.messages.map((m) => `${m.topic}:${m.payload}`), ['$foo:foo', '$SYS/x:sys-x-local'])
    } finally {
      await b.close()
    }
  })
})

describe('overlapping subscriptions of one client', () => {
  test("'a/#' QoS 0, 'a/b' QoS 2, '+/b' QoS 1: a QoS 2 message to 'a/b' arrives exactly once, at QoS 2", { timeout: TEST_TIMEOUT }, async () => {
    // [MQTT-3.3.5-1] the server delivers the message respecting the maximum QoS of all matching
    // subscriptions (the issue: once per client)
    const b = await startBroker()
    try {
      const client = await b.connect({ clientId: 'sub' })
      const inbox = new Inbox(client)
      assert.deepEqual(await subackCodes(client, { 'a/#': { qos: 0 }, 'a/b': { qos: 2 }, '+/b': { qos: 1 } }), [0, 2, 1])
      const pub = await b.connect({ clientId: 'pub' })
      await pub.publishAsync('a/b', 'q2', { qos: 2 })
      await pub.publishAsync('a/b', 'q1', { qos: 1 })
      await pub.publishAsync('z/b', 'zb', { qos: 2 })
      await pub.publishAsync('a/c', 'ac', { qos: 2 })
      // The sentinel also arrives at QoS 2 (the mqtt client emits QoS 2 messages on PUBREL), so any
      // duplicate of the messages above, at whatever QoS, would have been emitted before it.
      await pub.publishAsync('a/b', 'end', { qos: 2 })
      await inbox.waitFor('end')
      assert.deepEqual(
        inbox.messages.map((m) => [m.topic, m.payload, m.qos]).sort(),
        [
          ['a/b', 'end', 2],
          ['a/b', 'q1', 1],
          ['a/b', 'q2', 2],
          ['a/c', 'ac', 0],
          ['z/b', 'zb', 1],
        ],
      )
    } finally {
      await b.close()
    }
  })

  for (const { name, version } of VERSIONS) {
    test(`${name}, raw client: overlapping subscriptions yield one PUBLISH per message`, { timeout: TEST_TIMEOUT }, async () => {
      // [MQTT-3.3.5-1] one delivery at the maximum granted QoS
      const b = await startBroker()
      try {
        const raw = await RawMqtt.open(b, 'raw', version)
        subscribe(raw, 1, [
          ['o/#', 1],
          ['o/+', 0],
          ['o/t', 2],
          ['#', 0],
        ])
        assert.deepEqual((await raw.take('suback')).reasonCodes, [1, 0, 2, 0])
        const pub = await b.connect({ clientId: 'pub' })
        await pub.publishAsync('o/t', 'once', { qos: 2 })
        await pub.publishAsync('o/end', 'end', { qos: 0 })
        await raw.takePublish('end')
        const publishes = [...raw.pending()].filter((p) => p.type === 'publish')
        assert.equal(publishes.length, 1, 'exactly one PUBLISH of the message')
        assert.equal(publishes[0]?.type === 'publish' && publishes[0].qos, 2)
      } finally {
        await b.close()
      }
    })
  }
})
